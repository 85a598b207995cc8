package dev.sidecar.client;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The app's sidecar, over its HTTP API (java.net.http, no third-party jar). Requests and answers
 * are JSON strings; parse them with the JSON library you already use (or {@link Json}).
 *
 * <pre>
 * Sidecar sc = new Sidecar();   // $SIDECAR_URL, then http://127.0.0.1:8081
 * String greeting = sc.call("greeter", "Greeter.Hello", "{\"name\": \"Ada\"}");
 * sc.publish("orders.created", "{\"id\": 42}");
 * </pre>
 */
public final class Sidecar {
    public static final String DEFAULT_URL = "http://127.0.0.1:8081";

    private final String url;
    private final String token;
    private final HttpClient http;

    public Sidecar() {
        this(null, null);
    }

    public Sidecar(String url) {
        this(url, null);
    }

    public Sidecar(String url, String token) {
        String u = url != null ? url : System.getenv().getOrDefault("SIDECAR_URL", DEFAULT_URL);
        this.url = u.replaceAll("/+$", "");
        this.token = token;
        this.http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(5)).build();
    }

    private HttpResponse<String> send(HttpRequest.Builder b, Duration timeout) throws SidecarException {
        if (token != null) b.header("Authorization", "Bearer " + token);
        b.timeout(timeout);
        try {
            return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new SidecarException.Unreachable(url, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SidecarException.Unreachable(url, e);
        }
    }

    /** The sidecar's own error (JSON error body) or the callee's non-2xx answer. */
    private static SidecarException failure(HttpResponse<String> res) {
        String type = res.headers().firstValue("content-type").orElse("");
        if (type.startsWith("application/json")) {
            try {
                Object parsed = Json.parse(res.body());
                if (parsed instanceof Map && ((Map<?, ?>) parsed).get("error") instanceof Map) {
                    Map<?, ?> e = (Map<?, ?>) ((Map<?, ?>) parsed).get("error");
                    if (e.get("code") instanceof String) {
                        return new SidecarException((String) e.get("code"), String.valueOf(e.get("message")), res.statusCode(), (String) e.get("requestId"));
                    }
                }
            } catch (IllegalArgumentException ignored) {
                // not JSON after all: the callee's own answer
            }
        }
        return new SidecarException.CallFailed(res.statusCode(), res.body());
    }

    /** Call {@code endpoint} ("Greeter.Hello" or "/path") of {@code service} with a JSON request; returns the answer's body. */
    public String call(String service, String endpoint, String requestJson) throws SidecarException {
        return call(service, endpoint, requestJson, Duration.ofSeconds(5));
    }

    /** The same, with the call's deadline. */
    public String call(String service, String endpoint, String requestJson, Duration timeout) throws SidecarException {
        String envelope = "{\"service\":" + Json.quote(service) + ",\"endpoint\":" + Json.quote(endpoint)
                + ",\"request\":" + (requestJson == null || requestJson.isBlank() ? "{}" : requestJson)
                + ",\"timeout\":" + timeout.toMillis() + "}";
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url + "/rpc"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(envelope));
        HttpResponse<String> res = send(b, timeout.plusSeconds(5));
        if (res.statusCode() / 100 != 2) throw failure(res);
        return res.body();
    }

    /** Publish JSON {@code data} to {@code topic}; returns the message id. */
    public String publish(String topic, String data) throws SidecarException {
        return publish(topic, data, "application/json");
    }

    /** Publish {@code data} with its content type; returns the message id. */
    public String publish(String topic, String data, String contentType) throws SidecarException {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url + "/publish/" + URLEncoder.encode(topic, StandardCharsets.UTF_8)))
                .header("Content-Type", contentType)
                .POST(HttpRequest.BodyPublishers.ofString(data));
        HttpResponse<String> res = send(b, Duration.ofSeconds(10));
        if (res.statusCode() != 202) throw failure(res);
        return (String) ((Map<?, ?>) Json.parse(res.body())).get("id");
    }

    /** Names of the services with at least one registered node. */
    public List<String> services() throws SidecarException {
        HttpResponse<String> res = send(HttpRequest.newBuilder(URI.create(url + "/registry")).GET(), Duration.ofSeconds(10));
        if (res.statusCode() != 200) throw failure(res);
        List<String> names = new ArrayList<>();
        for (Object s : (List<?>) ((Map<?, ?>) Json.parse(res.body())).get("services")) names.add((String) ((Map<?, ?>) s).get("service"));
        return names;
    }

    /** The node records of {@code service}, as JSON. */
    public String nodes(String service) throws SidecarException {
        HttpResponse<String> res = send(HttpRequest.newBuilder(URI.create(url + "/registry/" + URLEncoder.encode(service, StandardCharsets.UTF_8))).GET(), Duration.ofSeconds(10));
        if (res.statusCode() != 200) throw failure(res);
        return res.body();
    }
}
