// The dashboard's "Compare selected": the ticked rows' ids go to the comparison page as one
// shareable list (?ids=3,5,8). Rows are re-rendered by htmx (live polling, filters), so the
// listeners sit on the document and the button's state is recomputed after every swap.
(function () {
  "use strict";

  function ticked() {
    return Array.from(document.querySelectorAll('input[name="ids"][form="compare-form"]:checked'))
      .map(function (box) { return box.value; });
  }

  function refresh() {
    var button = document.getElementById("compare-button");
    var hint = document.getElementById("compare-hint");
    if (!button) return;
    var ids = ticked();
    button.disabled = ids.length < 2;
    button.textContent = ids.length >= 2 ? "Compare selected (" + ids.length + ")" : "Compare selected";
    if (hint) hint.hidden = ids.length >= 2;
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches('input[name="ids"]')) refresh();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "compare-form") return;
    event.preventDefault();
    var ids = ticked();
    if (ids.length < 2) return;
    window.location.assign(form.getAttribute("action") + "?ids=" + ids.join(","));
  });

  document.addEventListener("htmx:afterSettle", refresh);
  document.addEventListener("DOMContentLoaded", refresh);
})();
