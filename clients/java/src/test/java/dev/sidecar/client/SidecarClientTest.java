package dev.sidecar.client;

import com.sun.net.httpserver.HttpServer;
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The Java client against real sidecars (node dist/cli.js, local registry and broker) and a real
 * app (the JDK's HttpServer). No test framework: each test is a method run by main, which prints
 * "N passed, N failed" and exits non-zero on a failure.
 */
public final class SidecarClientTest {
    static final String CLI = System.getProperty("sidecar.cli", new File("../../dist/cli.js").getAbsolutePath());
    static final List<Process> procs = new ArrayList<>();
    static final List<Message> delivered = new CopyOnWriteArrayList<>();
    static Sidecar sc;

    interface Check { void run() throws Exception; }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static HttpServer app() throws Exception {
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        s.createContext("/", ex -> {
            byte[] in = ex.getRequestBody().readAllBytes();
            String path = ex.getRequestURI().getPath();
            int status = 200;
            String out = "ok";
            String type = "text/plain";
            if (path.equals("/Greeter/Hello")) {
                Map<?, ?> req = (Map<?, ?>) Json.parse(new String(in, StandardCharsets.UTF_8));
                out = "{\"message\":" + Json.quote("Hello " + req.get("name")) + "}";
                type = "application/json";
            } else if (path.equals("/Teapot")) {
                status = 418;
                out = "short and stout";
            } else if (path.equals("/events")) {
                Map<String, String> h = new HashMap<>();
                ex.getRequestHeaders().forEach((k, v) -> h.put(k, v.get(0)));
                delivered.add(Message.parse(h, in));
                status = 204;
            }
            byte[] bytes = out.getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().set("Content-Type", type);
            ex.sendResponseHeaders(status, status == 204 ? -1 : bytes.length);
            if (status != 204) ex.getResponseBody().write(bytes);
            ex.close();
        });
        s.start();
        return s;
    }

    /** Start a sidecar; returns its api URL once the app is registered. */
    static String sidecar(String service, int appPort, String registry, String... extra) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("node", CLI, "start"));
        List<String> settings = new ArrayList<>(List.of("service.name=" + service, "app.port=" + appPort, "app.health.interval=100ms",
                "api.port=0", "inbound.port=0", "registry.dir=" + registry, "log.format=json"));
        settings.addAll(List.of(extra));
        for (String s : settings) { cmd.add("--set"); cmd.add(s); }
        Process p = new ProcessBuilder(cmd).directory(new File(registry)).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        procs.add(p);
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        String api = null;
        for (String line; (line = r.readLine()) != null; ) {
            Map<?, ?> rec = (Map<?, ?>) Json.parse(line);
            if ("listening".equals(rec.get("message"))) api = "http://" + rec.get("api");
            if ("registered".equals(rec.get("message"))) break;
        }
        if (api == null) throw new IllegalStateException("the sidecar for " + service + " did not start");
        Thread drain = new Thread(() -> { try { r.transferTo(java.io.Writer.nullWriter()); } catch (Exception ignored) { } });
        drain.setDaemon(true);
        drain.start();
        return api;
    }

    public static void main(String[] args) throws Exception {
        String registry = Files.createTempDirectory("sidecar-java-").toString();
        HttpServer greeter = app();
        HttpServer caller = app();
        int passed = 0;
        int failed = 0;
        try {
            sidecar("jgreeter", greeter.getAddress().getPort(), registry, "app.health.path=/", "subscriptions=[{\"topic\": \"java.events\", \"path\": \"/events\"}]");
            sc = new Sidecar(sidecar("jcaller", caller.getAddress().getPort(), registry, "app.health.path=/"));
            long deadline = System.currentTimeMillis() + 5000;
            while (!sc.services().contains("jgreeter") && System.currentTimeMillis() < deadline) Thread.sleep(20);

            Map<String, Check> tests = new java.util.LinkedHashMap<>();
            tests.put("call returns the answer", () -> {
                Map<?, ?> answer = (Map<?, ?>) Json.parse(sc.call("jgreeter", "Greeter.Hello", "{\"name\": \"Ada\"}"));
                check("Hello Ada".equals(answer.get("message")), "answer: " + answer);
            });
            tests.put("errors carry the sidecar's code", () -> {
                try {
                    sc.call("nobody", "A.b", null);
                    check(false, "no exception");
                } catch (SidecarException e) {
                    check("SERVICE_NOT_FOUND".equals(e.code()) && e.status() == 404 && e.requestId() != null, "got " + e.getMessage());
                }
            });
            tests.put("the callee's own errors pass through", () -> {
                try {
                    sc.call("jgreeter", "/Teapot", "{}");
                    check(false, "no exception");
                } catch (SidecarException.CallFailed e) {
                    check(e.status() == 418 && "short and stout".equals(e.body()), "got " + e.getMessage());
                }
            });
            tests.put("publish, and the delivery parses as a Message", () -> {
                String id = sc.publish("java.events", "{\"order\": 7}");
                long until = System.currentTimeMillis() + 5000;
                while (delivered.isEmpty() && System.currentTimeMillis() < until) Thread.sleep(20);
                check(!delivered.isEmpty(), "nothing delivered");
                Message m = delivered.get(0);
                check(id.equals(m.id), "id " + m.id + " != " + id);
                check("java.events".equals(m.topic) && m.attempt == 1 && "application/json".equals(m.contentType), "message " + m.headers);
                check(((Map<?, ?>) Json.parse(m.text())).get("order").equals(7.0), "body " + m.text());
            });
            tests.put("services and nodes", () -> {
                check(sc.services().contains("jcaller"), "services " + sc.services());
                check(sc.nodes("jgreeter").contains("\"service\":\"jgreeter\""), "nodes");
            });
            tests.put("an unreachable sidecar", () -> {
                try {
                    new Sidecar("http://127.0.0.1:1").services();
                    check(false, "no exception");
                } catch (SidecarException.Unreachable e) {
                    check("SIDECAR_UNREACHABLE".equals(e.code()), e.getMessage());
                }
            });
            tests.put("json reader", () -> {
                Object v = Json.parse("{\"a\": [1, 2.5, \"x\\n\\u00e9\", true, null], \"b\": {}}");
                check(v.toString().equals("{a=[1.0, 2.5, x\né, true, null], b={}}"), v.toString());
                try { Json.parse("{\"a\": }"); check(false, "accepted bad JSON"); } catch (IllegalArgumentException ok) { }
            });
            for (Map.Entry<String, Check> t : tests.entrySet()) {
                try {
                    t.getValue().run();
                    passed++;
                    System.out.println("ok - " + t.getKey());
                } catch (Throwable e) {
                    failed++;
                    System.out.println("not ok - " + t.getKey() + ": " + e);
                }
            }
        } finally {
            for (Process p : procs) { p.destroy(); p.waitFor(); }
            greeter.stop(0);
            caller.stop(0);
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
