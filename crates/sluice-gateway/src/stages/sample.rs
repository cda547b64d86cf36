//! Stage sample: head sampling, once the route is known — a trace the caller
//! did not decide on is sampled as the route's `tracing` says (a share of its
//! requests, and a floor per API). Spans are recorded only for sampled traces.

use crate::ctx::RequestCtx;
use crate::table::CompiledRoute;

pub(crate) fn decide(ctx: &mut RequestCtx<'_>, route: &CompiledRoute) {
    let Some(trace) = &mut ctx.trace else {
        return;
    };
    if !trace.decided {
        trace.sampled = route
            .head_sampling
            .sample(ctx.api.as_deref(), u64::try_from(ctx.clock.ms).unwrap_or(0));
        trace.decided = true;
    }
    ctx.record_spans &= trace.sampled;
}
