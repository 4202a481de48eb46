// Job forms on the architecture page: keep each select's description (the chosen option's
// title) under it current. The verdict itself comes from the server (htmx, on change).
(function () {
  function describe(select) {
    const note = document.querySelector('small.describe[data-describes="' + select.id + '"]');
    if (!note) return;
    const option = select.options[select.selectedIndex];
    note.textContent = option ? option.title || "" : "";
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-describe]")) {
      describe(event.target);
    }
  });
  document.querySelectorAll("select[data-describe]").forEach(describe);
})();
