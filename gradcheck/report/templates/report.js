(function () {
  "use strict";
  // Progressive enhancement: without JavaScript the rows are in run order, and the "show passing"
  // checkbox (pure CSS) is the only filter.
  var table = document.getElementById("checks-table");
  var form = document.getElementById("filters");
  if (!table || !form) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var shown = document.getElementById("shown");
  var passing = document.getElementById("show-passing");
  form.hidden = false;

  function value(name) {
    var el = form.elements[name];
    return el ? el.value : "";
  }
  function filter() {
    var act = value("activation"), loss = value("loss"), q = value("q").trim().toLowerCase();
    var all = !passing || passing.checked;
    var n = 0;
    rows.forEach(function (r) {
      var d = r.dataset;
      var ok = (all || d.status !== "passed") && (!act || d.activation === act) &&
               (!loss || d.loss === loss) && (!q || d.name.indexOf(q) !== -1);
      r.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n + " of " + rows.length + " checks shown";
  }
  form.addEventListener("input", filter);
  form.addEventListener("change", filter);
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  if (passing) passing.addEventListener("change", filter);
  filter();

  // text sorts in natural order: runs of digits padded to 6, so "[2]" comes before "[16]"
  // (the same key as gradcheck.report.html.natural_key)
  function natural(text) {
    return text.toLowerCase().replace(/\d+/g, function (d) { return d.length < 6 ? "000000".slice(d.length) + d : d; });
  }
  function key(row, col, numeric) {
    var cell = row.cells[col], main = cell.querySelector(".nm");
    var v = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : (main || cell).textContent.trim();
    if (!numeric) return natural(v);
    return v === "" ? null : parseFloat(v);
  }
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th) {
    if (!th.dataset.type) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", function () {
      var col = th.cellIndex, numeric = th.dataset.type === "num";
      var dir = th.getAttribute("aria-sort") === "descending" ? 1 : (th.getAttribute("aria-sort") === "ascending" ? -1 : (numeric ? -1 : 1));
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var order = rows.map(function (r, i) { return [key(r, col, numeric), i, r]; });
      order.sort(function (a, b) {
        if (a[0] === null || b[0] === null) return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1);
        if (a[0] < b[0]) return -dir;
        if (a[0] > b[0]) return dir;
        return a[1] - b[1];
      });
      order.forEach(function (o) { body.appendChild(o[2]); });
    });
  });
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
