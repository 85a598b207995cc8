package dev.sidecar.client;

/** The sidecar answered with its JSON error body: {@link #code()} is stable (see the README's error table). */
public class SidecarException extends Exception {
    private final String code;
    private final int status;
    private final String requestId;

    public SidecarException(String code, String message, int status, String requestId) {
        super(code + " (" + status + "): " + message);
        this.code = code;
        this.status = status;
        this.requestId = requestId;
    }

    /** Stable error code, e.g. SERVICE_NOT_FOUND, TIMEOUT, NO_HEALTHY_NODE. */
    public String code() { return code; }

    public int status() { return status; }

    public String requestId() { return requestId; }

    /** The callee app itself answered a non-2xx status; its answer is passed through unchanged. */
    public static final class CallFailed extends SidecarException {
        private final String body;

        public CallFailed(int status, String body) {
            super("CALL_FAILED", "the callee answered " + status + ": " + body, status, null);
            this.body = body;
        }

        public String body() { return body; }
    }

    /** The sidecar could not be reached at all (not running, wrong URL). */
    public static final class Unreachable extends SidecarException {
        public Unreachable(String url, Throwable cause) {
            super("SIDECAR_UNREACHABLE", "cannot reach the sidecar at " + url + ": " + cause, 0, null);
            initCause(cause);
        }
    }
}
