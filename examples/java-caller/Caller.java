import com.sun.net.httpserver.HttpServer;
import dev.sidecar.client.Json;
import dev.sidecar.client.Sidecar;
import dev.sidecar.client.SidecarException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;

/**
 * Example: a Java service beside its sidecar. It calls the Python greeter (Greeter.Hello) and
 * publishes an order to orders.created, every CALLER_INTERVAL_MS, CALLER_ROUNDS times (default:
 * for ever). It serves GET /health for its sidecar.
 *
 *   APP_PORT=6000 SIDECAR_URL=http://127.0.0.1:8081 java -cp build Caller
 */
public final class Caller {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(System.getenv().getOrDefault("APP_PORT", "6000"));
        int rounds = Integer.parseInt(System.getenv().getOrDefault("CALLER_ROUNDS", "0"));
        long interval = Long.parseLong(System.getenv().getOrDefault("CALLER_INTERVAL_MS", "2000"));
        String host = System.getenv().getOrDefault("APP_HOST", "127.0.0.1");

        HttpServer health = HttpServer.create(new InetSocketAddress(host, port), 0);
        health.createContext("/health", ex -> {
            byte[] ok = "{\"status\":\"ok\"}".getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().set("Content-Type", "application/json");
            ex.sendResponseHeaders(200, ok.length);
            ex.getResponseBody().write(ok);
            ex.close();
        });
        health.start();
        System.out.println("caller: listening on port " + port);

        Sidecar sidecar = new Sidecar();
        for (int i = 1; rounds == 0 || i <= rounds; ) {
            try {
                String answer = sidecar.call("greeter", "Greeter.Hello", "{\"name\": \"Java #" + i + "\"}", Duration.ofSeconds(2));
                System.out.println("caller: greeter answered " + ((Map<?, ?>) Json.parse(answer)).get("message"));
                String id = sidecar.publish("orders.created", "{\"id\": " + i + ", \"item\": \"book\"}");
                System.out.println("caller: published order " + i + " as message " + id);
                i++;
            } catch (SidecarException e) {
                // The greeter may not be registered yet (SERVICE_NOT_FOUND, NO_HEALTHY_NODE): try again.
                System.out.println("caller: " + e.getMessage());
            }
            Thread.sleep(interval);
        }
        System.out.println("caller: done");
        health.stop(0);
    }
}
