using System.Diagnostics;
using System.Net.Http.Headers;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// The realtime door's cost: <c>POST /v1/chat/completions</c> answered synchronously, measured
/// against an instant, unlimited simulator on 127.0.0.1 in three ways side by side under the same
/// load: the simulator itself (direct), a bare reverse proxy in front of it (what any proxy costs),
/// and a Shepherd server whose upstream it is (limits set far above the load, so nothing waits for
/// a rate limit). First an open loop at <c>--rps</c>, in one-second slices that take the targets
/// in turn, <c>--warmup</c> rounds unmeasured and <c>--seconds</c> measured; each request is
/// started on its schedule whether or not earlier ones have been answered, and its latency counted
/// from that schedule (so a stall is not hidden by the requests it held back). Then, target after
/// target, <c>--streams</c> streamed answers kept in flight for <c>--stream-seconds</c>, paced by
/// the simulator at <c>--stream-interval-ms</c> between events. Everything runs in this process.
/// </summary>
internal static class GatewayScenario
{
    private const int StreamWarmupSeconds = 1;

    private static readonly TimeSpan FailurePause = TimeSpan.FromMilliseconds(100);

    private static readonly Uri ChatCompletions = new("v1/chat/completions", UriKind.Relative);

    private static readonly LaneLimits Unlimited = new()
    {
        RequestsPerMinute = 60_000_000,
        TokensPerMinute = 60_000_000_000,
        MaxConcurrency = 10_000,
    };

    public static async Task<object> RunAsync(BenchArgs args)
    {
        var rps = args.Int("rps", 1000);
        var seconds = args.Int("seconds", 10);
        var warmup = args.Int("warmup", 2);
        var streams = args.Int("streams", 100);
        var streamSeconds = args.Int("stream-seconds", 8);
        var intervalMs = args.Int("stream-interval-ms", 100);
        var streamMaxTokens = args.Int("stream-max-tokens", 50);

        // Every target is sent the same distinct bodies, each once after the warm-up, and the server has no answer cache.
        using var workload = Workload.Create((warmup + seconds) * rps);
        using var streamed = Workload.CreateStreamed(Math.Max(1, streams) * (StreamWarmupSeconds + streamSeconds) * 4, streamMaxTokens);
        await using var host = await InProcessServer.StartAsync(
            new SimulatorOptions { StreamInterval = TimeSpan.FromMilliseconds(intervalMs) }, Math.Clamp(streams * 2, 256, 10_000), limits: Unlimited);
        await using var proxy = await BareProxy.StartAsync(host.Simulator.BaseUrl);
        var targets = new[]
        {
            new Target("direct", Client(host.Simulator.BaseUrl, null)),
            new Target("proxy", Client(proxy.BaseUrl, null)),
            new Target("shepherd", Client(host.Server.BaseUrl, host.Http.DefaultRequestHeaders.Authorization)),
        };
        try
        {
            // One-second slices, a slice a target in turn (the order turning each round), so whatever the
            // machine does meanwhile falls on all three alike; the first rounds warm the process up.
            Settle();
            var slices = targets.ToDictionary(t => t.Name, _ => new List<Slice>());
            for (var round = 0; round < warmup + seconds; round++)
            {
                var bodies = workload.Bodies.Skip(round * rps).Take(rps).ToList();
                var line = new List<string>();
                for (var k = 0; k < targets.Length; k++)
                {
                    var target = targets[(round + k) % targets.Length];
                    var slice = await OpenLoopAsync(target.Http, bodies, rps);
                    line.Add($"{target.Name} {slice.Outcomes.Count(o => o.Ok)} ok, p50 {Percentiles.Of([.. slice.Outcomes.Where(o => o.Ok).Select(o => o.LatencyMs)]).P50} ms");
                    if (round >= warmup)
                    {
                        slices[target.Name].Add(slice);
                    }
                }

                await Console.Error.WriteLineAsync($"round {round + 1}/{warmup + seconds}{(round < warmup ? " (warm-up)" : "")} at {rps} req/s: {string.Join("; ", line)}");
            }

            var rates = slices.ToDictionary(p => p.Key, p => RateFigures.Of(p.Value));
            foreach (var (name, figures) in rates)
            {
                await Console.Error.WriteLineAsync(
                    $"{name}: {figures.AchievedPerSecond} req/s answered, {figures.Errors} errors, p50 {figures.LatencyMs.P50} ms, p99 {figures.LatencyMs.P99} ms, max {figures.LatencyMs.Max} ms");
            }

            var streaming = new Dictionary<string, StreamFigures>();
            if (streams > 0)
            {
                foreach (var target in targets)
                {
                    Settle();
                    await Console.Error.WriteLineAsync($"{target.Name}: {streams} streams in flight, {StreamWarmupSeconds} s warm-up then {streamSeconds} s");
                    var figures = await StreamsAsync(target.Http, streamed.Bodies, streams, StreamWarmupSeconds, streamSeconds);
                    streaming[target.Name] = figures;
                    await Console.Error.WriteLineAsync(
                        $"{target.Name}: {figures.Completed} streams completed, {figures.StreamsPerSecond} streams/s, {figures.Errors} errors, "
                        + $"first byte p50 {figures.FirstByteMs.P50} ms p99 {figures.FirstByteMs.P99} ms, whole stream p50 {figures.TotalMs.P50} ms p99 {figures.TotalMs.P99} ms");
                }
            }

            return new
            {
                Scenario = "gateway",
                Machine = Machine.Describe(),
                Route = "POST /v1/chat/completions",
                Requests = new
                {
                    Rps = rps,
                    Seconds = seconds,
                    WarmupSeconds = warmup,
                    SliceSeconds = 1,
                    Targets = rates,
                    AddedMs = AddedOverDirect(rates, r => r.LatencyMs, r => r.Ok),
                },
                Streams = streams == 0 ? null : new
                {
                    InFlight = streams,
                    Seconds = streamSeconds,
                    WarmupSeconds = StreamWarmupSeconds,
                    IntervalMs = intervalMs,
                    MaxTokens = streamMaxTokens,
                    Targets = streaming,
                    FirstByteAddedMs = AddedOverDirect(streaming, s => s.FirstByteMs, s => s.Completed),
                    TotalAddedMs = AddedOverDirect(streaming, s => s.TotalMs, s => s.Completed),
                },
                Note = "One process holds the load generator, the simulator, the proxy and the Shepherd server; its CPU time is theirs together. "
                    + "Latency runs from each request's scheduled start; service latency from when it was actually sent.",
            };
        }
        finally
        {
            foreach (var target in targets)
            {
                target.Http.Dispose();
            }
        }
    }

    /// <summary>A client for one target: connections enough for any load, never recycled mid-run.</summary>
    private static HttpClient Client(Uri baseUrl, AuthenticationHeaderValue? authorization)
    {
        var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 10_000, PooledConnectionLifetime = Timeout.InfiniteTimeSpan, UseCookies = false })
        {
            BaseAddress = baseUrl,
            Timeout = TimeSpan.FromSeconds(30),
        };
        client.DefaultRequestHeaders.Authorization = authorization;
        return client;
    }

    /// <summary>A phase starts on a collected heap, so none pays for the garbage of the one before.</summary>
    private static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    /// <summary>
    /// Starts request <c>i</c> at <c>origin + i / rps</c> from a thread of its own (see
    /// <see cref="PreciseWait"/>), without waiting for earlier answers, and returns once all are answered.
    /// </summary>
    private static async Task<Slice> OpenLoopAsync(HttpClient http, List<byte[]> bodies, int rps)
    {
        var count = bodies.Count;
        var outcomes = new Outcome[count];
        var sends = new Task[count];
        var tick = (double)Stopwatch.Frequency / rps;
        var origin = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 20);
        var cpuAtStart = CpuTime();
        await Task.Factory.StartNew(
            () =>
            {
                for (var i = 0; i < count; i++)
                {
                    var due = origin + (long)(i * tick);
                    PreciseWait.Until(due);
                    sends[i] = SendAsync(http, bodies[i], due, outcomes, i);
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        await Task.WhenAll(sends);
        var cpu = CpuTime() - cpuAtStart;
        return new Slice(outcomes, count == 0 ? 0 : Stopwatch.GetElapsedTime(origin, outcomes.Max(o => o.End)).TotalSeconds, cpu);
    }

    /// <summary>One request of the open loop; a failure is counted, never thrown.</summary>
    private static async Task SendAsync(HttpClient http, byte[] body, long due, Outcome[] outcomes, int index)
    {
        var sent = Stopwatch.GetTimestamp();
        int status;
        string? note = null;
        try
        {
            using var content = Json(body);
            using var response = await http.PostAsync(ChatCompletions, content);
            status = (int)response.StatusCode;
            if (!response.IsSuccessStatusCode)
            {
                note = $"{status}: {Clip(await response.Content.ReadAsStringAsync())}";
            }
        }
        catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
        {
            status = 0;
            note = $"transport: {exception.Message}";
        }

        var end = Stopwatch.GetTimestamp();
        outcomes[index] = new Outcome(status, Ms(due, end), Ms(sent, end), Ms(due, sent), end, note);
    }

    /// <summary>
    /// <paramref name="inFlight"/> streams held open at once: when one ends the next starts, until
    /// the warm-up and the measured seconds are over; the streams under way then are finished.
    /// Streams started in the warm-up are not measured.
    /// </summary>
    private static async Task<StreamFigures> StreamsAsync(HttpClient http, IReadOnlyList<byte[]> bodies, int inFlight, int warmupSeconds, int seconds)
    {
        var measureFrom = Stopwatch.GetTimestamp() + (warmupSeconds * Stopwatch.Frequency);
        var stopAt = measureFrom + (seconds * Stopwatch.Frequency);
        var next = -1;
        var cpuAtStart = TimeSpan.Zero;
        var measuring = Task.Delay(Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), measureFrom), TimeProvider.System)
            .ContinueWith(_ => cpuAtStart = CpuTime(), TaskScheduler.Default);
        var runs = await Task.WhenAll(Enumerable.Range(0, inFlight).Select(_ => Task.Run(async () =>
        {
            var calls = new List<StreamCall>();
            while (Stopwatch.GetTimestamp() < stopAt)
            {
                var call = await StreamOnceAsync(http, bodies[Interlocked.Increment(ref next) % bodies.Count]);
                calls.Add(call);
                if (!call.Complete)
                {
                    // A target that fails at once (a route it lacks) is not hammered in a tight loop.
                    await Task.Delay(FailurePause, TimeProvider.System);
                }
            }

            return calls;
        })));
        await measuring;
        var cpu = CpuTime() - cpuAtStart;

        var measured = runs.SelectMany(r => r).Where(c => c.Start >= measureFrom).ToList();
        var complete = measured.Where(c => c.Complete).ToList();
        return new StreamFigures(
            measured.Count,
            complete.Count,
            measured.Count - complete.Count,
            Statuses(measured.Select(c => c.Status)),
            Math.Round(runs.SelectMany(r => r).Count(c => c.Complete && c.End >= measureFrom && c.End < stopAt) / (double)seconds, 1),
            Percentiles.Of([.. complete.Select(c => Ms(c.Start, c.FirstByte))]),
            Percentiles.Of([.. complete.Select(c => Ms(c.Start, c.End))]),
            Math.Round(cpu.TotalSeconds, 2),
            Examples(measured.Where(c => !c.Complete).Select(c => c.Note)));
    }

    /// <summary>One streamed answer, read as it comes; complete when it answered 2xx and ended with <c>data: [DONE]</c>.</summary>
    private static async Task<StreamCall> StreamOnceAsync(HttpClient http, byte[] body)
    {
        var start = Stopwatch.GetTimestamp();
        var firstByte = 0L;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, ChatCompletions) { Content = Json(body) };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            await using var stream = await response.Content.ReadAsStreamAsync();
            using var received = new MemoryStream();
            var buffer = new byte[4096];
            int read;
            while ((read = await stream.ReadAsync(buffer)) > 0)
            {
                firstByte = firstByte == 0 ? Stopwatch.GetTimestamp() : firstByte;
                received.Write(buffer, 0, read);
            }

            var end = Stopwatch.GetTimestamp();
            var text = System.Text.Encoding.UTF8.GetString(received.GetBuffer(), 0, (int)received.Length);
            var complete = response.IsSuccessStatusCode && text.TrimEnd().EndsWith("data: [DONE]", StringComparison.Ordinal);
            return new StreamCall((int)response.StatusCode, start, firstByte, end, complete, complete ? null : $"{(int)response.StatusCode}: {Clip(text)}");
        }
        catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException or IOException)
        {
            return new StreamCall(0, start, firstByte, Stopwatch.GetTimestamp(), false, $"transport: {exception.Message}");
        }
    }

    /// <summary>
    /// What the proxy and Shepherd add over direct, and Shepherd over the proxy, in the figures that
    /// <paramref name="of"/> picks: the differences of their percentiles.
    /// </summary>
    private static Dictionary<string, object?> AddedOverDirect<T>(Dictionary<string, T> targets, Func<T, Percentiles> of, Func<T, int> answered)
    {
        object? Over(string name, string baseline) => Added(of(targets[name]), answered(targets[name]), of(targets[baseline]));
        return new() { ["proxy"] = Over("proxy", "direct"), ["shepherd"] = Over("shepherd", "direct"), ["shepherd_over_proxy"] = Over("shepherd", "proxy") };
    }

    /// <summary>How much a target adds over a baseline, as the difference of their percentiles; null when the target answered nothing.</summary>
    private static object? Added(Percentiles target, int answered, Percentiles baseline) =>
        answered == 0 ? null : new { P50 = Math.Round(target.P50 - baseline.P50, 3), P99 = Math.Round(target.P99 - baseline.P99, 3) };

    internal static Dictionary<string, int> Statuses(IEnumerable<int> statuses) =>
        statuses.GroupBy(s => s == 0 ? "transport" : s.ToString(System.Globalization.CultureInfo.InvariantCulture)).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count());

    internal static List<string> Examples(IEnumerable<string?> notes) => [.. notes.OfType<string>().Distinct().Take(3)];

    private static ByteArrayContent Json(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private static string Clip(string text) => text.Length <= 200 ? text : text[..200];

    private static double Ms(long from, long to) => Stopwatch.GetElapsedTime(from, to).TotalMilliseconds;

    private static TimeSpan CpuTime()
    {
        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime;
    }

    private sealed record Target(string Name, HttpClient Http);

    private sealed record StreamCall(int Status, long Start, long FirstByte, long End, bool Complete, string? Note);
}

/// <summary>One request of the open loop: its status (0: no answer) and times.</summary>
/// <param name="Status">The status answered; 0 when none was.</param>
/// <param name="LatencyMs">From the scheduled start to the end of the answer.</param>
/// <param name="ServiceMs">From when the request was actually sent to the end of the answer.</param>
/// <param name="LagMs">How late the request was sent against its schedule.</param>
/// <param name="End">The <see cref="System.Diagnostics.Stopwatch"/> timestamp of the end of the answer.</param>
/// <param name="Note">What was answered, when it was not 2xx.</param>
internal readonly record struct Outcome(int Status, double LatencyMs, double ServiceMs, double LagMs, long End, string? Note)
{
    public bool Ok => Status is >= 200 and < 300;
}

/// <summary>One second of the open loop against one target.</summary>
/// <param name="Outcomes">Its requests.</param>
/// <param name="Seconds">From its first scheduled start to its last answer.</param>
/// <param name="Cpu">CPU time of the whole process meanwhile.</param>
internal sealed record Slice(Outcome[] Outcomes, double Seconds, TimeSpan Cpu);

/// <summary>The figures of one target under the open loop, over its measured slices.</summary>
/// <param name="Sent">Requests started.</param>
/// <param name="Ok">Of them, answered 2xx.</param>
/// <param name="Errors">Of them, answered otherwise or not at all.</param>
/// <param name="Statuses">The answers by status (<c>transport</c>: none).</param>
/// <param name="AchievedPerSecond">Answered 2xx over the slices' time, each from its first scheduled start to its last answer.</param>
/// <param name="LatencyMs">Of the 2xx answers, from the scheduled start to the end of the answer.</param>
/// <param name="ServiceLatencyMs">Of the 2xx answers, from when the request was actually sent.</param>
/// <param name="StartLagMs">How late the requests were sent against their schedule.</param>
/// <param name="CpuSeconds">CPU time of the whole process (load generator and servers) over the slices.</param>
/// <param name="CpuMsPerRequest"><paramref name="CpuSeconds"/> over <paramref name="Sent"/>.</param>
/// <param name="ErrorExamples">A few of the failures as they were answered.</param>
internal sealed record RateFigures(
    int Sent,
    int Ok,
    int Errors,
    Dictionary<string, int> Statuses,
    double AchievedPerSecond,
    Percentiles LatencyMs,
    Percentiles ServiceLatencyMs,
    Percentiles StartLagMs,
    double CpuSeconds,
    double CpuMsPerRequest,
    List<string> ErrorExamples)
{
    public static RateFigures Of(IReadOnlyList<Slice> slices)
    {
        var all = slices.SelectMany(s => s.Outcomes).ToList();
        var ok = all.Where(o => o.Ok).ToList();
        var seconds = slices.Sum(s => s.Seconds);
        var cpu = slices.Aggregate(TimeSpan.Zero, (sum, s) => sum + s.Cpu);
        return new RateFigures(
            all.Count,
            ok.Count,
            all.Count - ok.Count,
            GatewayScenario.Statuses(all.Select(o => o.Status)),
            seconds == 0 ? 0 : Math.Round(ok.Count / seconds, 1),
            Percentiles.Of([.. ok.Select(o => o.LatencyMs)]),
            Percentiles.Of([.. ok.Select(o => o.ServiceMs)]),
            Percentiles.Of([.. all.Select(o => o.LagMs)]),
            Math.Round(cpu.TotalSeconds, 2),
            all.Count == 0 ? 0 : Math.Round(cpu.TotalMilliseconds / all.Count, 3),
            GatewayScenario.Examples(all.Where(o => !o.Ok).Select(o => o.Note)));
    }
}

/// <summary>The figures of one target's streams.</summary>
/// <param name="Started">Streams started in the measured seconds.</param>
/// <param name="Completed">Of them, answered 2xx and ended with <c>data: [DONE]</c>.</param>
/// <param name="Errors">Of them, the rest.</param>
/// <param name="Statuses">Their answers by status (<c>transport</c>: none).</param>
/// <param name="StreamsPerSecond">Streams completed within the measured seconds, over them.</param>
/// <param name="FirstByteMs">Of the completed streams, from the start to the first byte of the body.</param>
/// <param name="TotalMs">Of the completed streams, from the start to the end of the body.</param>
/// <param name="CpuSeconds">CPU time of the whole process from the end of the warm-up until the last stream ended.</param>
/// <param name="ErrorExamples">A few of the failures as they were answered.</param>
internal sealed record StreamFigures(
    int Started,
    int Completed,
    int Errors,
    Dictionary<string, int> Statuses,
    double StreamsPerSecond,
    Percentiles FirstByteMs,
    Percentiles TotalMs,
    double CpuSeconds,
    List<string> ErrorExamples);
