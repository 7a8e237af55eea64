// The demo's pages: plain JavaScript over the JSON endpoints, in cookie mode. The
// partial token, the session and the refresh token travel only in HttpOnly cookies (the
// pages never keep the tokens the JSON bodies also carry); nothing secret is ever put in
// a URL or in storage (only the short-lived, single-use mfa_token of a step-up
// waits in sessionStorage while the code form is shown).
"use strict";

const $ = (id) => document.getElementById(id);
const show = (el, on = true) => el.classList.toggle("hidden", !on);

function notice(kind, text) {
  const m = $("message");
  m.className = "notice " + kind;
  m.textContent = text;
  show(m, true);
}

async function postJson(path, body) {
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await res.json(); } catch (_) { /* 204 */ }
  return { status: res.status, data, headers: res.headers };
}

async function getJsonOnce(path) {
  const res = await fetch(path, { credentials: "same-origin" });
  let data = {};
  try { data = await res.json(); } catch (_) {}
  return { status: res.status, data };
}

// A protected read. When the session cookie's access token has expired, a silent
// refresh (the HttpOnly refresh cookie goes to /auth/refresh by itself) and one retry.
async function getJson(path) {
  const r = await getJsonOnce(path);
  if (r.status !== 401) return r;
  const refreshed = await postJson("/auth/refresh", {});
  return refreshed.status === 200 ? getJsonOnce(path) : r;
}

// A DELETE (no body; the JSON content type is the endpoints' CSRF rule), with the same
// silent refresh as getJson.
async function deleteOnce(path) {
  const res = await fetch(path, {
    method: "DELETE",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
  });
  let data = {};
  try { data = await res.json(); } catch (_) { /* 204 */ }
  return { status: res.status, data };
}

async function deleteJson(path) {
  const r = await deleteOnce(path);
  if (r.status !== 401) return r;
  const refreshed = await postJson("/auth/refresh", {});
  return refreshed.status === 200 ? deleteOnce(path) : r;
}

const when = (secs) => (secs ? new Date(secs * 1000).toISOString().replace(".000Z", "Z") : "");

// Where to go after signing in: a path on this origin only (no open redirect), else
// `fallback`. The raw value must be one "/" not followed by another "/" or a "\"
// (browsers read "/\host" as "//host"), with no "\" or control character anywhere (the
// URL parser drops tabs and newlines, so "/<TAB>/host" would become "//host"). Nothing
// is stripped: a doubtful value is refused. It must then resolve to this very origin,
// and to a path that does not itself start with "//" ("/.//host" does).
function nextPath(fallback) {
  const next = new URLSearchParams(location.search).get("next");
  if (!next || !/^\/(?![\/\\])/.test(next) || /[\\\u0000-\u001f\u007f]/.test(next)) {
    return fallback;
  }
  let url;
  try {
    url = new URL(next, location.href);
  } catch (_) {
    return fallback;
  }
  if (url.origin !== location.origin || url.pathname.startsWith("//")) return fallback;
  return next;
}

function busy(button, on, text) {
  button.disabled = on;
  button.setAttribute("aria-busy", on ? "true" : "false");
  if (text) button.textContent = text;
}

// What a challenge accepts (its `mfa_requirements`): the types to offer on the /mfa
// page, and whether the user must first enroll one.
function keepRequirements(req) {
  const offer = ((req && (req.challenge || req.enroll)) || []).map((r) => r.type);
  sessionStorage.setItem("mfa_types", JSON.stringify(offer));
  sessionStorage.setItem("mfa_enroll", req && req.enroll ? "1" : "");
}

// A route answered 403 mfa_required: keep its mfa_token for the second-factor form, go
// there, and come back here afterwards.
function stepUp(data) {
  sessionStorage.setItem("mfa_token", data.mfa_token);
  sessionStorage.setItem("mfa_expires_at", String(Date.now() + 300 * 1000));
  keepRequirements(data.mfa_requirements);
  location.assign("/mfa?next=" + encodeURIComponent(location.pathname));
}

// WebAuthn: the JSON forms the server speaks (base64url strings, as webauthn-rs and
// PublicKeyCredential.toJSON() write them) to and from the browser's ArrayBuffers.
const b64url = {
  decode(s) {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  },
  encode(buf) {
    let bin = "";
    for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
};

const withIds = (list) => (list || []).map((c) => ({ ...c, id: b64url.decode(c.id) }));

// A PublicKeyCredential as JSON, its `response` already encoded.
const credentialJson = (cred, response) => ({
  id: cred.id,
  rawId: b64url.encode(cred.rawId),
  type: cred.type,
  response,
  extensions: cred.getClientExtensionResults(),
});

const passkeys = {
  supported: () => typeof window.PublicKeyCredential === "function",

  // `publicKey` of /auth/passkey/register/start → navigator.credentials.create → the
  // registration response for /auth/passkey/register/finish.
  async create(pk) {
    const cred = await navigator.credentials.create({
      publicKey: {
        ...pk,
        challenge: b64url.decode(pk.challenge),
        user: { ...pk.user, id: b64url.decode(pk.user.id) },
        excludeCredentials: withIds(pk.excludeCredentials),
      },
    });
    const r = cred.response;
    return credentialJson(cred, {
      attestationObject: b64url.encode(r.attestationObject),
      clientDataJSON: b64url.encode(r.clientDataJSON),
      transports: r.getTransports ? r.getTransports() : [],
    });
  },

  // `publicKey` of /auth/passkey/challenge → navigator.credentials.get → the
  // authentication response for /auth/mfa/verify.
  async get(pk) {
    const cred = await navigator.credentials.get({
      publicKey: {
        ...pk,
        challenge: b64url.decode(pk.challenge),
        allowCredentials: withIds(pk.allowCredentials),
      },
    });
    const r = cred.response;
    return credentialJson(cred, {
      authenticatorData: b64url.encode(r.authenticatorData),
      clientDataJSON: b64url.encode(r.clientDataJSON),
      signature: b64url.encode(r.signature),
      userHandle: r.userHandle ? b64url.encode(r.userHandle) : null,
    });
  },

  // What to tell the user when the browser's ceremony ends without a credential.
  failed(e, creating) {
    switch (e && e.name) {
      case "NotAllowedError":
        return creating
          ? "No passkey was added: the request was cancelled or timed out."
          : "No passkey was used: the request was cancelled or timed out, or this device has no passkey for your account. Try again, or use another device.";
      case "InvalidStateError":
        return "This device already holds a passkey for your account.";
      case "SecurityError":
        return "Passkeys do not work at this address (it is not the one the site is set up for).";
      default:
        return "Passkeys are not available in this browser.";
    }
  },
};

function signedOut() {
  location.assign("/login?next=" + encodeURIComponent(location.pathname));
}

const pages = {
  login() {
    $("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = $("submit");
      show($("message"), false);
      busy(button, true, "Signing in…");
      const r = await postJson("/auth/login", {
        username: $("username").value,
        password: $("password").value,
      });
      busy(button, false, "Sign in");
      if (r.status === 200 && r.data.status === "mfa_required") {
        // The partial token is in an HttpOnly cookie; only its expiry is kept here.
        sessionStorage.removeItem("mfa_token");
        sessionStorage.setItem("partial_expires_at", String(Date.now() + r.data.expires_in * 1000));
        keepRequirements(r.data.mfa_requirements);
        location.assign("/mfa?next=" + encodeURIComponent(nextPath("/dashboard")));
      } else if (r.status === 200) {
        location.assign(nextPath("/dashboard"));
      } else if (r.status === 401) {
        notice("error", "Wrong username or password.");
      } else {
        notice("error", "Sign-in is unavailable right now. Please try again shortly.");
      }
    });
  },

  mfa() {
    const stepUpToken = sessionStorage.getItem("mfa_token");
    const types = JSON.parse(sessionStorage.getItem("mfa_types") || '["otp"]');
    const codes = types.some((t) => t !== "passkey");
    if (stepUpToken) {
      $("mfa-title").textContent = "Confirm it's you";
      $("mfa-help").textContent = "This page needs a recent second factor. Enter the 6-digit code from your authenticator app.";
    }
    if (sessionStorage.getItem("mfa_enroll")) {
      // The route wants a factor the user has not set up (a passkey, for Admin).
      show($("code-option"), false);
      show($("enroll-passkey"), true);
      sessionStorage.removeItem("mfa_token");
      return;
    }
    show($("passkey-option"), types.includes("passkey"));
    if (!codes) {
      $("passkey-help").textContent = "This page needs your passkey: your fingerprint, face or screen lock.";
    }
    show($("code-option"), codes);
    const expiresAt = Number(sessionStorage.getItem(stepUpToken ? "mfa_expires_at" : "partial_expires_at") || 0);
    const restart = (text) => {
      notice("error", text);
      show($("passkey-option"), false);
      show($("code-option"), false);
      show($("restart"), true);
      sessionStorage.removeItem("mfa_token");
    };
    const expired = () => expiresAt && Date.now() >= expiresAt;
    // The answer of verify, whatever the proof.
    const answered = (r, wrong) => {
      if (r.status === 200) {
        sessionStorage.removeItem("mfa_token");
        sessionStorage.removeItem("partial_expires_at");
        location.assign(nextPath("/dashboard"));
      } else if (r.data.error === "invalid_code") {
        const left = r.data.attempts_remaining;
        notice("error", wrong + " " + left + (left === 1 ? " attempt" : " attempts") + " left.");
      } else if (r.data.error === "mfa_token_expired") {
        restart("This sign-in has expired. Please start again.");
      } else if (r.data.error === "mfa_token_not_found") {
        restart("This sign-in was already used. Please start again.");
      } else if (r.status === 429) {
        const secs = Number(r.headers.get("retry-after") || r.data.retry_after || 0);
        const at = new Date(Date.now() + secs * 1000).toLocaleTimeString();
        restart("Too many failed attempts. You can try again in " + Math.ceil(secs / 60) + " minutes (at " + at + ").");
      } else {
        restart("Something went wrong. Please start again.");
      }
    };
    const proof = (extra) => {
      const body = { ...extra };
      if (stepUpToken) body.mfa_token = stepUpToken;
      if ($("remember").checked) body.remember_device = true;
      return body;
    };
    $("mfa-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      // An expired challenge is not sent: the flow's partial_token_expired.
      if (expired()) return restart("This sign-in has expired. Please start again.");
      const button = $("submit");
      show($("message"), false);
      busy(button, true, "Verifying…");
      const r = await postJson("/auth/mfa/verify", proof({ code: $("code").value.trim() }));
      busy(button, false, "Verify");
      $("code").value = "";
      answered(r, "That code is not right.");
    });
    $("use-passkey").addEventListener("click", async () => {
      if (expired()) return restart("This sign-in has expired. Please start again.");
      if (!passkeys.supported()) return notice("error", passkeys.failed(null, false));
      const button = $("use-passkey");
      show($("message"), false);
      busy(button, true, "Waiting for your passkey…");
      // The challenge is bound to this sign-in (the partial cookie, or the mfa_token).
      const ch = await postJson("/auth/passkey/challenge", stepUpToken ? { mfa_token: stepUpToken } : {});
      if (ch.status !== 200) {
        busy(button, false, "Use a passkey");
        return answered(ch, "");
      }
      let credential;
      try {
        credential = await passkeys.get(ch.data.publicKey);
      } catch (err) {
        busy(button, false, "Use a passkey");
        return notice("error", passkeys.failed(err, false));
      }
      busy(button, true, "Verifying…");
      const r = await postJson("/auth/mfa/verify", proof({ passkey: credential }));
      busy(button, false, "Use a passkey");
      answered(r, "That passkey is not registered to your account.");
    });
  },

  async dashboard() {
    const r = await getJson("/api/me");
    if (r.status === 401) return signedOut();
    show($("loading"), false);
    $("sub").textContent = r.data.sub;
    $("amr").textContent = (r.data.amr || []).join(", ");
    $("acr").textContent = r.data.acr || "";
    $("auth-time").textContent = r.data.auth_time ? new Date(r.data.auth_time * 1000).toISOString() : "";
    show($("me"), true);
  },

  async billing() {
    const r = await getJson("/api/billing");
    if (r.status === 401) return signedOut();
    if (r.status === 403 && r.data.error === "mfa_required") return stepUp(r.data);
    show($("loading"), false);
    const body = $("invoices").querySelector("tbody");
    for (const inv of r.data.invoices || []) {
      const row = body.insertRow();
      row.insertCell().textContent = inv.id;
      row.insertCell().textContent = inv.amount + " " + inv.currency;
    }
    show($("invoices"), true);
  },

  async admin() {
    const r = await getJson("/api/admin");
    if (r.status === 401) return signedOut();
    if (r.status === 403 && r.data.error === "mfa_required") return stepUp(r.data);
    show($("loading"), false);
    $("sub").textContent = r.data.sub;
    $("acr").textContent = r.data.acr || "";
    show($("admin"), true);
  },

  security() {
    securityPasskeys();
    $("start-enroll").addEventListener("click", async () => {
      const button = $("start-enroll");
      busy(button, true, "Starting…");
      const r = await postJson("/auth/mfa/enroll", {});
      busy(button, false, "Set up an authenticator");
      if (r.status === 401) return signedOut();
      if (r.status === 403 && r.data.error === "mfa_required") return stepUp(r.data);
      if (r.status !== 200) return notice("error", "Enrollment is unavailable right now.");
      show(button, false);
      // The SVG is generated by the server from the otpauth URI (no script in it).
      $("qr").innerHTML = r.data.qr_svg;
      $("secret").textContent = r.data.secret;
      show($("enroll"), true);
    });
    $("confirm-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = $("confirm");
      show($("message"), false);
      busy(button, true, "Confirming…");
      const r = await postJson("/auth/mfa/enroll/confirm", { code: $("code").value.trim() });
      busy(button, false, "Confirm");
      if (r.status === 200) {
        show($("enroll"), false);
        show($("message"), false);
        const list = $("codes");
        for (const c of r.data.recovery_codes) list.appendChild(document.createElement("li")).textContent = c;
        show($("recovery"), true);
      } else if (r.data.error === "invalid_code") {
        notice("error", "That code is not right. " + r.data.attempts_remaining + " attempts left.");
      } else {
        notice("error", "Could not confirm: " + (r.data.error_description || r.status));
      }
    });
  },
};

// The security page's passkeys: the list (GET /auth/factors) and "Add a passkey"
// (register start → the browser's ceremony → register finish).
function securityPasskeys() {
  const list = async () => {
    const r = await getJson("/auth/factors");
    if (r.status === 401) return signedOut();
    if (r.status !== 200) return;
    const ul = $("passkeys");
    ul.replaceChildren();
    for (const f of r.data.factors.filter((f) => f.type === "passkey")) {
      const li = ul.appendChild(document.createElement("li"));
      li.className = "passkey";
      li.dataset.id = f.id;
      li.textContent = f.name + " · added " + when(f.created_at);
    }
    show($("no-passkeys"), ul.children.length === 0);
  };
  $("passkey-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!passkeys.supported()) return notice("error", passkeys.failed(null, true));
    const button = $("add-passkey");
    show($("message"), false);
    busy(button, true, "Waiting for your passkey…");
    const start = await postJson("/auth/passkey/register/start", {});
    if (start.status === 401) return signedOut();
    if (start.status === 403 && start.data.error === "mfa_required") return stepUp(start.data);
    if (start.status !== 200) {
      busy(button, false, "Add a passkey");
      return notice("error", "Passkeys are unavailable right now.");
    }
    let credential;
    try {
      credential = await passkeys.create(start.data.publicKey);
    } catch (err) {
      busy(button, false, "Add a passkey");
      return notice("error", passkeys.failed(err, true));
    }
    const r = await postJson("/auth/passkey/register/finish", {
      registration_id: start.data.registration_id,
      credential,
      name: $("passkey-name").value.trim(),
    });
    busy(button, false, "Add a passkey");
    if (r.status !== 200) {
      return notice("error", "The passkey was not added: " + (r.data.error_description || r.status));
    }
    notice("ok", "Passkey added.");
    await list();
  });
  list();
}

// Ends one session (or device) at `path`: true when done; otherwise the step-up, a new
// sign-in or a message takes over.
async function endOne(path) {
  const r = await deleteJson(path);
  if (r.status === 204 || r.status === 404) return true;
  if (r.status === 401) { signedOut(); return false; }
  if (r.status === 403 && r.data.error === "mfa_required") { stepUp(r.data); return false; }
  if (r.status === 403 && r.data.error === "reauthentication_required") { signedOut(); return false; }
  notice("error", "Could not end it: " + (r.data.error_description || r.status));
  return false;
}

pages.sessions = async function sessions() {
  const load = async () => {
    const r = await getJson("/auth/sessions");
    if (r.status === 401) return signedOut();
    if (r.status !== 200) return notice("error", "Sessions are unavailable right now.");
    show($("loading"), false);
    const body = $("sessions").querySelector("tbody");
    body.replaceChildren();
    for (const s of r.data.sessions) {
      const row = body.insertRow();
      row.dataset.id = s.id;
      row.className = s.current ? "session current" : "session";
      row.insertCell().textContent = when(s.auth_time);
      row.insertCell().textContent = when(s.last_seen_at);
      row.insertCell().textContent = s.amr.join(", ");
      const last = row.insertCell();
      if (s.current) {
        last.appendChild(document.createElement("span")).textContent = "This browser";
        last.firstChild.className = "tag";
      } else {
        const b = last.appendChild(document.createElement("button"));
        b.type = "button";
        b.className = "end-session";
        b.textContent = "End";
        b.addEventListener("click", async () => {
          busy(b, true, "Ending…");
          if (await endOne("/auth/sessions/" + encodeURIComponent(s.id))) await load();
        });
      }
    }
    show($("end-others"), r.data.sessions.some((s) => !s.current));
    const devices = $("devices").querySelector("tbody");
    devices.replaceChildren();
    for (const d of r.data.devices || []) {
      const row = devices.insertRow();
      row.dataset.id = d.id;
      row.className = d.current ? "device current" : "device";
      row.insertCell().textContent = when(d.created_at);
      row.insertCell().textContent = when(d.last_used_at);
      row.insertCell().textContent = when(d.expires_at);
      const last = row.insertCell();
      if (d.current) {
        const tag = last.appendChild(document.createElement("span"));
        tag.className = "tag";
        tag.textContent = "This browser ";
      }
      const b = last.appendChild(document.createElement("button"));
      b.type = "button";
      b.className = "forget-device";
      b.textContent = "Forget";
      b.addEventListener("click", async () => {
        busy(b, true, "Forgetting…");
        if (await endOne("/auth/devices/" + encodeURIComponent(d.id))) await load();
      });
    }
    const none = (r.data.devices || []).length === 0;
    show($("no-devices"), none);
    show($("devices"), !none);
    show($("sessions-area"), true);
    return r.data;
  };
  $("end-others").addEventListener("click", async () => {
    const button = $("end-others");
    busy(button, true, "Signing out…");
    const r = await getJson("/auth/sessions");
    for (const s of (r.data.sessions || []).filter((s) => !s.current)) {
      if (!(await endOne("/auth/sessions/" + encodeURIComponent(s.id)))) return;
    }
    busy(button, false, "Sign out everywhere else");
    await load();
    notice("ok", "Signed out everywhere else.");
  });
  await load();
};

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const logout = $("logout");
  if (page !== "login" && page !== "mfa") {
    show(logout, true);
    logout.addEventListener("click", async () => {
      // The refresh cookie names the session to end; the server clears both cookies.
      await postJson("/auth/logout", {});
      location.assign("/login");
    });
  }
  if (pages[page]) pages[page]();
});
