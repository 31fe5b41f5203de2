// Passkeys: the browser's half of the ceremonies checked by vigie/accounts/views_passkeys.py.
//
// A same-origin file, not an inline script: the Content-Security-Policy allows no other
// kind. Pages mark a <section data-passkey="login|second_factor|reauth|register"> with the
// URLs of its two steps (data-options-url, data-url) and the messages to show; this file
// does the rest. The server checks everything; nothing here is trusted.
(function () {
  "use strict";

  var supported =
    window.PublicKeyCredential !== undefined &&
    typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function" &&
    typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function";

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function post(url, data) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(data || {}),
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (body) {
          return { ok: response.ok, status: response.status, body: body };
        });
    });
  }

  function say(root, message) {
    var box = root.querySelector("[data-passkey-error]");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  // A server answer: where to go next, or what went wrong. Locked out (429) or asked to
  // confirm who you are first (403), the server also says where to go: the page there explains.
  function settle(root, result) {
    if (result.body.redirect && (result.ok || result.status === 429 || result.status === 403)) {
      window.location.assign(result.body.redirect);
      return;
    }
    say(root, result.body.error || root.dataset.failed);
  }

  function failed(root, error) {
    if (error && error.name === "AbortError") return; // replaced by another attempt
    // NotAllowedError: cancelled, timed out, or no passkey of this site on the device.
    say(root, error && error.name === "NotAllowedError" ? root.dataset.cancelled : root.dataset.failed);
  }

  var pending = null; // the conditional (autofill) request, aborted when a button is used

  function authenticate(root, mediation) {
    if (pending) {
      pending.abort();
      pending = null;
    }
    var controller = new AbortController();
    if (mediation === "conditional") pending = controller;
    say(root, "");
    return post(root.dataset.optionsUrl)
      .then(function (options) {
        if (!options.ok) {
          settle(root, options);
          return null;
        }
        var request = {
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.body),
          signal: controller.signal,
        };
        if (mediation) request.mediation = mediation;
        return navigator.credentials.get(request);
      })
      .then(function (credential) {
        if (!credential) return null;
        return post(root.dataset.url, { credential: credential.toJSON(), next: root.dataset.next || "" });
      })
      .then(function (result) {
        if (result) settle(root, result);
      })
      .catch(function (error) {
        if (mediation !== "conditional") failed(root, error);
      });
  }

  function register(root) {
    say(root, "");
    var name = root.querySelector("[data-passkey-name]");
    return post(root.dataset.optionsUrl)
      .then(function (options) {
        if (!options.ok) {
          settle(root, options);
          return null;
        }
        return navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.body),
        });
      })
      .then(function (credential) {
        if (!credential) return null;
        return post(root.dataset.url, { credential: credential.toJSON(), name: name ? name.value : "" });
      })
      .then(function (result) {
        if (result) settle(root, result);
      })
      .catch(function (error) {
        failed(root, error);
      });
  }

  function setUp(root) {
    var button = root.querySelector("[data-passkey-start]");
    if (!supported) {
      say(root, root.dataset.unsupported);
      if (button) button.disabled = true;
      return;
    }
    var kind = root.dataset.passkey;
    if (button) {
      button.addEventListener("click", function () {
        if (kind === "register") register(root);
        else authenticate(root, "");
      });
    }
    if (kind === "login" && root.dataset.mediation === "conditional") {
      // Conditional mediation: the browser offers the passkeys in the identifier field's
      // autofill, where it can. The field must say so before the request starts.
      var field = document.querySelector("input[autocomplete^=username]");
      if (field && typeof PublicKeyCredential.isConditionalMediationAvailable === "function") {
        PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
          if (!available) return;
          field.setAttribute("autocomplete", "username webauthn");
          authenticate(root, "conditional");
        });
      }
    }
  }

  document.querySelectorAll("[data-passkey]").forEach(setUp);
})();
