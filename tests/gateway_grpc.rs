//! gRPC through the gateway: a tonic server and client (messages declared with
//! prost's derive, no protoc), unary and server-streaming calls, and an error's
//! `grpc-status` carried back in the trailers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::codegen::http;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::support::{Http, Sluice};

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

struct Say;
impl tonic::server::UnaryService<EchoRequest> for Say {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;
    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let message = request.into_inner().message;
            if message == "fail" {
                return Err(Status::not_found("nothing called fail"));
            }
            Ok(Response::new(EchoReply {
                message: format!("echo: {message}"),
            }))
        })
    }
}

struct Count;
impl tonic::server::ServerStreamingService<EchoRequest> for Count {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Result<Response<ReplyStream>, Status>>;
    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let count = request.into_inner().count;
            let stream = futures::stream::iter((0..count).map(|i| {
                Ok(EchoReply {
                    message: i.to_string(),
                })
            }));
            Ok(Response::new(Box::pin(stream) as ReplyStream))
        })
    }
}

/// The service, written as tonic's generated code would be.
#[derive(Clone)]
struct EchoService;

impl tower::Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            Ok(match request.uri().path() {
                "/echo.Echo/Say" => grpc.unary(Say, request).await,
                "/echo.Echo/Count" => grpc.server_streaming(Count, request).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

impl tonic::server::NamedService for EchoService {
    const NAME: &'static str = "echo.Echo";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_and_status_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::up(dir.path());
    let gateway = sluice.gateway.clone().unwrap();
    let port = sluice_testkit::free_port();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoService)
            .serve(address),
    );
    let api = Http::new(&sluice.url);
    api.put(
        "/v1/namespaces/default/services/echo-grpc/instances/g1",
        &format!(r#"{{"address":"127.0.0.1:{port}"}}"#),
    )
    .await;
    api.put(
        "/v1/namespaces/default/resources/Route/grpc",
        r#"{"spec": {"match": {"path_prefix": "/echo.Echo/"}, "service": "echo-grpc"}}"#,
    )
    .await;

    let channel = tonic::transport::Channel::from_shared(gateway)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    let say = http::uri::PathAndQuery::from_static("/echo.Echo/Say");
    let mut reply = None;
    for _ in 0..200 {
        client.ready().await.unwrap();
        let request = Request::new(EchoRequest {
            message: "hi".into(),
            count: 0,
        });
        match client
            .unary(
                request,
                say.clone(),
                ProstCodec::<EchoRequest, EchoReply>::default(),
            )
            .await
        {
            Ok(response) => {
                reply = Some(response.into_inner());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    assert_eq!(
        reply.expect("the unary call went through").message,
        "echo: hi"
    );

    // An error status arrives intact (it travels in the trailers).
    client.ready().await.unwrap();
    let request = Request::new(EchoRequest {
        message: "fail".into(),
        count: 0,
    });
    let status = client
        .unary(
            request,
            say.clone(),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "nothing called fail");

    // Server streaming.
    client.ready().await.unwrap();
    let request = Request::new(EchoRequest {
        message: String::new(),
        count: 5,
    });
    let path = http::uri::PathAndQuery::from_static("/echo.Echo/Count");
    let stream = client
        .server_streaming(
            request,
            path,
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let messages: Vec<String> = stream.map(|item| item.unwrap().message).collect().await;
    assert_eq!(messages, ["0", "1", "2", "3", "4"]);
}
