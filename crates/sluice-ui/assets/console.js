// Sluice console: draws every `.chart` element's curves with uPlot from the JSON
// at its `data-src` (/ui/series), on load and again when htmx swaps in a
// refreshed page body. Each chart records how many points it holds in
// `data-points` (the browser tests read it).
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
        var series = [{}].concat(data.series.map(function (s, i) {
          return {
            label: s.label,
            stroke: palette[i % palette.length],
            width: 1.5,
            value: function (u, v) { return fmt(v) + (data.unit ? " " + data.unit : ""); }
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
        if (points === 0) el.classList.add("empty");
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
