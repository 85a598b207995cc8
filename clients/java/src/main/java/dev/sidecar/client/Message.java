package dev.sidecar.client;

import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/** A message the sidecar delivered to the app (a CloudEvent in binary mode), from any HTTP server's headers and body. */
public final class Message {
    public final String id;
    public final String topic;
    public final String type;
    public final String source;
    public final String time;
    public final int attempt;
    public final String contentType;
    public final byte[] data;
    public final Map<String, String> headers;

    private Message(Map<String, String> h, byte[] data) {
        this.headers = h;
        this.id = h.get("ce-id");
        this.topic = h.getOrDefault("x-sidecar-topic", "");
        this.type = h.get("ce-type");
        this.source = h.get("ce-source");
        this.time = h.get("ce-time");
        this.attempt = Integer.parseInt(h.getOrDefault("x-sidecar-attempt", "1"));
        this.contentType = h.get("content-type");
        this.data = data;
    }

    /** Build a Message from a delivery's headers (any case) and body; throws if it is not a sidecar delivery. */
    public static Message parse(Map<String, String> headers, byte[] body) {
        Map<String, String> h = new TreeMap<>();
        headers.forEach((k, v) -> h.put(k.toLowerCase(Locale.ROOT), v));
        if (!h.containsKey("ce-id")) throw new IllegalArgumentException("not a sidecar delivery: no ce-id header");
        return new Message(h, body);
    }

    public String text() {
        return new String(data, StandardCharsets.UTF_8);
    }
}
