// Cast SMS settings page: the GHL SSO handshake and local times. No build step, no library.
(function () {
  "use strict";

  // An origin is allowed when it equals one of the patterns, or a pattern is
  // "scheme://*.domain" and the origin is that scheme on a subdomain of domain (as CSP matches).
  function allowedOrigin(origin, patterns) {
    for (var i = 0; i < patterns.length; i++) {
      var pattern = patterns[i];
      if (origin === pattern) return true;
      var star = pattern.indexOf("://*.");
      if (star < 0) continue;
      var scheme = pattern.slice(0, star + 3);
      var suffix = pattern.slice(star + 4);
      if (
        origin.indexOf(scheme) === 0 &&
        origin.length > scheme.length + suffix.length &&
        origin.slice(-suffix.length) === suffix
      ) {
        return true;
      }
    }
    return false;
  }

  // 1. Sign-in: ask the GHL parent window for the encrypted user context and post it to the
  //    bridge, which decrypts it with the app's Shared Secret. Only on the page that has the form.
  //    The answer is taken only from the parent window, on one of GHL's origins (the same list
  //    as the page's CSP frame-ancestors): another page cannot sign the user in as someone else.
  function signIn() {
    var form = document.getElementById("sso-form");
    var status = document.getElementById("sso-status");
    if (!form || !status) return;
    if (window.parent === window) {
      status.textContent =
        "Open Cast SMS from the menu of a sub-account in GoHighLevel: this page identifies you through GoHighLevel.";
      return;
    }
    var origins = (form.getAttribute("data-frame-origins") || "").split(" ");
    var done = false;
    window.addEventListener("message", function (event) {
      var data = event.data;
      if (done || !data || data.message !== "REQUEST_USER_DATA_RESPONSE") return;
      if (event.source !== window.parent || !allowedOrigin(event.origin, origins)) return;
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

  // 2. Show times in Philippine time, like the server's text (the datetime attribute is UTC),
  //    in the viewer's own date style.
  function localTimes() {
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        times[i].textContent =
          when.toLocaleString(undefined, {
            dateStyle: "medium",
            timeStyle: "short",
            timeZone: "Asia/Manila",
          }) + " PHT";
      }
    }
  }

  signIn();
  localTimes();
})();
