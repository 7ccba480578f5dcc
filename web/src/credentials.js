// Getting conversation credentials from our server (GET api/token) and turning them into startSession options.
// No DOM here, so that `node --test` can check it.

/** Plain words for when the voice server itself cannot be reached or answers something unreadable. */
export const SERVER_UNREACHABLE =
  "The voice server cannot be reached. Check your connection, then press Start again.";
export const SERVER_CONFUSED = "The voice server sent an answer this page cannot read. Try again in a minute.";

/**
 * Ask our server for credentials.
 * @param {typeof fetch} fetchImpl
 * @param {string} accessCode sent as a bearer token when not empty
 * @returns {Promise<{ok: true, credentials: object} | {ok: false, message: string, code: string}>}
 */
export async function requestCredentials(fetchImpl, accessCode = "") {
  const headers = { Accept: "application/json" };
  if (accessCode) headers.Authorization = `Bearer ${accessCode}`;
  let response;
  try {
    // Relative: the page also works when the channel is mounted under a prefix (/voice/ -> /voice/api/token).
    response = await fetchImpl("api/token", { headers, cache: "no-store", credentials: "same-origin" });
  } catch {
    return { ok: false, code: "unreachable", message: SERVER_UNREACHABLE };
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    if (body && typeof body.error === "string" && body.error) {
      return { ok: false, code: String(body.code || "error"), message: body.error };
    }
    return { ok: false, code: "unreachable", message: SERVER_UNREACHABLE };
  }
  if (!body || (typeof body.token !== "string" && typeof body.signed_url !== "string")) {
    return { ok: false, code: "bad_response", message: SERVER_CONFUSED };
  }
  return { ok: true, credentials: body };
}

/**
 * startSession options for the credentials our server handed out: a conversation token (WebRTC, through
 * LiveKit) or a signed URL (WebSocket). The first-message override is only present when the server checked
 * that the engine allows it.
 */
export function sessionOptions(credentials) {
  const options =
    typeof credentials.signed_url === "string"
      ? { signedUrl: credentials.signed_url, connectionType: "websocket" }
      : { conversationToken: credentials.token, connectionType: "webrtc" };
  if (options.connectionType === "webrtc" && typeof credentials.livekit_url === "string") {
    options.livekitUrl = credentials.livekit_url;
  }
  if (typeof credentials.first_message === "string" && credentials.first_message) {
    options.overrides = { agent: { firstMessage: credentials.first_message } };
  }
  return options;
}

/** Codes of token refusals that an access code can fix. */
export function needsAccessCode(code) {
  return code === "access_code_required" || code === "access_code_wrong";
}
