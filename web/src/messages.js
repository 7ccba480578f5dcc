// What the page says when something goes wrong, in plain words. No DOM here (tested with `node --test`).

/** The microphone could not be opened: why, in words a caller understands. */
export function microphoneProblem(error, { secure = true } = {}) {
  if (!secure) {
    return "The microphone only works on a secure page. Open this page with an https:// address.";
  }
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The microphone is blocked. Allow it for this site (the icon next to the address), then press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one, then press Start again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone is busy or not working. Close other apps that use it, then press Start again.";
    default:
      return "The microphone could not be opened. Check it, then press Start again.";
  }
}

export const CONNECT_FAILED =
  "Could not connect to the voice service. Check your network, then press Start again.";

/** How a conversation ended: the status line, and an error to show when it was not meant to end. */
export function disconnectMessage(details) {
  switch (details && details.reason) {
    case "user":
      return { status: "Conversation ended.", error: null };
    case "agent":
      return { status: "The assistant ended the conversation.", error: null };
    default:
      return { status: "Conversation ended.", error: "The conversation was cut off. Press Start to talk again." };
  }
}

/** A status line for a conversation mode. */
export function modeStatus(mode) {
  return mode === "speaking" ? "The assistant is speaking." : "Listening. Speak now.";
}
