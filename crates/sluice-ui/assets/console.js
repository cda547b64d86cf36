// Sluice console: draws every `.chart` element's curves with uPlot from the JSON
// at its `data-src` (/ui/series), on load and again when htmx swaps in a
// refreshed page body. Each chart records how many points it holds in
// `data-points` and how many of them are drawn as lone dots in `data-dots`
// (the browser tests read both).
(function () {
  "use strict";

  var palette = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed",
                 "#0891b2", "#db2777", "#65a30d", "#4b5563", "#ea580c"];

  function fmt(v) {
    if (v == null) return "–";
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return v.toFixed(2);
    if (a === 0) return "0";
    return v.toPrecision(2);
  }

  // Axis ticks: compact for large values, otherwise as uPlot spaced them
  // (without floating-point noise).
  function tick(v) {
    if (v == null) return "";
    return Math.abs(v) >= 1e4 ? fmt(v) : String(+v.toFixed(6));
  }

  // Indices of the points with no neighbour (null or missing on both sides):
  // uPlot draws no line through them, so they are drawn as dots.
  function lonePoints(values) {
    var lone = [];
    for (var i = 0; i < values.length; i++) {
      if (values[i] == null) continue;
      var before = i > 0 ? values[i - 1] : null;
      var after = i + 1 < values.length ? values[i + 1] : null;
      if (before == null && after == null) lone.push(i);
    }
    return lone;
  }

  function draw(el) {
    if (el.dataset.drawn) return;
    el.dataset.drawn = "1";
    fetch(el.dataset.src, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        var holder = document.createElement("div");
        holder.className = "plot";
        el.appendChild(holder);
        var dots = 0;
        var series = [{}].concat(data.series.map(function (s, i) {
          var lone = lonePoints(s.values);
          dots += lone.length;
          return {
            label: s.label,
            stroke: palette[i % palette.length],
            width: 1.5,
            value: function (u, v) { return fmt(v) + (data.unit ? " " + data.unit : ""); },
            // Where uPlot shows no points by itself (dense data), still show the lone ones.
            points: {
              size: 7,
              fill: palette[i % palette.length],
              filter: function (u, seriesIdx, show) { return show || lone.length === 0 ? null : lone; }
            }
          };
        }));
        var options = {
          width: Math.max(280, (el.clientWidth || 560) - 12),
          height: 170,
          series: series,
          axes: [{}, { size: 56, values: function (u, values) { return values.map(tick); } }],
          cursor: { drag: { x: false, y: false } }
        };
        var columns = [data.x].concat(data.series.map(function (s) { return s.values; }));
        el.plot = new uPlot(options, columns, holder);
        var points = 0;
        data.series.forEach(function (s) {
          s.values.forEach(function (v) { if (v != null) points += 1; });
        });
        el.dataset.points = String(points);
        el.dataset.dots = String(dots);
        if (points === 0) {
          el.classList.add("empty");
          var note = document.createElement("p");
          note.className = "no-data";
          note.textContent = "no data yet: the first step is written after " +
            (data.first_step_s || 10) + " s";
          el.appendChild(note);
        }
      })
      .catch(function (error) {
        el.dataset.error = String(error);
        el.classList.add("failed");
      });
  }

  function drawAll(root) {
    (root || document).querySelectorAll(".chart[data-src]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:load", function (event) { drawAll(event.detail.elt); });
  window.addEventListener("resize", function () {
    document.querySelectorAll(".chart").forEach(function (el) {
      if (el.plot) el.plot.setSize({ width: Math.max(280, el.clientWidth - 12), height: 170 });
    });
  });
})();
