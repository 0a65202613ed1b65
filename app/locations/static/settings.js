// Cast SMS settings page: the GHL SSO handshake and local times. No build step, no library.
(function () {
  "use strict";

  // 1. Sign-in: ask the GHL parent window for the encrypted user context and post it to the
  //    bridge, which decrypts it with the app's Shared Secret. Only on the page that has the form.
  function signIn() {
    var form = document.getElementById("sso-form");
    var status = document.getElementById("sso-status");
    if (!form || !status) return;
    if (window.parent === window) {
      status.textContent =
        "Open Cast SMS from the menu of a sub-account in GoHighLevel: this page identifies you through GoHighLevel.";
      return;
    }
    var done = false;
    window.addEventListener("message", function (event) {
      var data = event.data;
      if (done || !data || data.message !== "REQUEST_USER_DATA_RESPONSE") return;
      if (typeof data.payload !== "string" || !data.payload) return;
      done = true;
      status.textContent = "Signing in…";
      form.elements.payload.value = data.payload;
      form.submit();
    });
    window.parent.postMessage({ message: "REQUEST_USER_DATA" }, "*");
    window.setTimeout(function () {
      if (!done) {
        status.textContent =
          "GoHighLevel did not send your user details. Reload the page, or open it from the sub-account menu.";
      }
    }, 10000);
  }

  // 2. Show times in the viewer's time zone (the server writes UTC).
  function localTimes() {
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        times[i].textContent = when.toLocaleString(undefined, {
          dateStyle: "medium",
          timeStyle: "short",
        });
      }
    }
  }

  signIn();
  localTimes();
})();
