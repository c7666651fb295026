using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Shepherd.Engine.Storage;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// How fast <c>GET /v1/batches/{id}</c> answers while a batch runs: a Shepherd server on
/// 127.0.0.1 sends an inline batch to the simulator over HTTP, and one client reads the batch's
/// status over and over, one read at a time on a kept-alive connection. In the same run, on the
/// same server, interleaved with those reads: <c>GET /health</c> (the cheapest route, the
/// baseline) and the store's own read of the batch row (no HTTP). Then the same reads once the
/// batch has ended.
/// </summary>
internal static class StatusScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 10_000);
        var reads = args.Int("reads", 2_000);
        var warmup = args.Int("warmup", 200);
        var latencyMs = args.Int("latency-ms", 20);
        var jitterMs = args.Int("jitter-ms", 10);
        var concurrency = args.Int("concurrency", 8);
        var secondCount = args.Int("second-requests", 10_000);
        await using var host = await InProcessServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(latencyMs), Jitter = TimeSpan.FromMilliseconds(jitterMs) }, concurrency);
        var store = host.Server.Services.GetRequiredService<IBatchStore>();
        var client = host.Http;

        var body = CreateBody(count);
        var (createMs, created) = await CreateAsync(client, body);
        var id = created.GetProperty("id").GetString()!;
        await Console.Error.WriteLineAsync($"created {id} with {count} requests in {createMs:0} ms ({body.Length / 1048576.0:0.0} MB body)");

        var statusPath = new Uri($"v1/batches/{id}", UriKind.Relative);
        var healthPath = new Uri("health", UriKind.Relative);
        await MeasureAsync(client, store, id, statusPath, healthPath, warmup);
        var running = await MeasureAsync(client, store, id, statusPath, healthPath, reads);
        var inFlight = running.AtStart.InFlight && running.AtEnd.InFlight;
        await Console.Error.WriteLineAsync(
            $"while running: status p50 {running.Status.P50} ms p99 {running.Status.P99} ms, /health p99 {running.Health.P99} ms; "
            + $"{running.AtStart.Finished} -> {running.AtEnd.Finished} of {count} finished, {running.AtEnd.Status}");
        if (!inFlight)
        {
            throw new InvalidOperationException(
                $"The batch was not in flight for the whole measurement (first read: {running.AtStart.Status}, {running.AtStart.Finished}/{count} finished; "
                + $"last read: {running.AtEnd.Status}, {running.AtEnd.Finished}/{count} finished). Raise --requests, lower --concurrency or --reads.");
        }

        // A second inline batch created while the first runs: its create time under load. It is
        // cancelled at once, so the rest of the scenario sees the first batch alone.
        var (secondCreateMs, second) = await CreateAsync(client, CreateBody(secondCount));
        var secondId = second.GetProperty("id").GetString()!;
        (await client.PostAsync(new Uri($"v1/batches/{secondId}/cancel", UriKind.Relative), null)).EnsureSuccessStatusCode();
        await Console.Error.WriteLineAsync($"while running: created a second batch of {secondCount} requests in {secondCreateMs:0} ms");

        var waitWatch = Stopwatch.StartNew();
        var ended = await WaitForEndAsync(client, statusPath);
        await Console.Error.WriteLineAsync($"batch {ended.GetProperty("status").GetString()} after {ended.GetProperty("duration_seconds").GetDouble()} s");
        var idle = await MeasureAsync(client, store, id, statusPath, healthPath, reads);
        await Console.Error.WriteLineAsync($"idle: status p50 {idle.Status.P50} ms p99 {idle.Status.P99} ms, /health p99 {idle.Health.P99} ms");
        var stats = host.Simulator.Provider.Stats();
        return new
        {
            Scenario = "status",
            Machine = Machine.Describe(),
            Requests = count,
            ReadsPerPhase = reads,
            WarmupReads = warmup,
            SimulatorLatencyMs = latencyMs,
            SimulatorJitterMs = jitterMs,
            DispatchConcurrency = concurrency,
            CreateMs = Math.Round(createMs, 1),
            CreateBodyBytes = body.Length,
            SecondRequests = secondCount,
            SecondCreateMsWhileRunning = Math.Round(secondCreateMs, 1),
            BatchInFlightThroughout = inFlight,
            WhileRunning = running,
            Idle = idle,
            StatusToHealthP50 = Math.Round(running.Status.P50 / running.Health.P50, 2),
            StatusToHealthP99 = Math.Round(running.Status.P99 / running.Health.P99, 2),
            P99UnderFiveMs = running.Status.P99 < 5,
            P50UnderTwoMs = running.Status.P50 < 2,
            P99UnderTenMs = running.Status.P99 < 10,
            Batch = new
            {
                Status = ended.GetProperty("status").GetString(),
                Completed = ended.GetProperty("request_counts").GetProperty("completed").GetInt64(),
                Failed = ended.GetProperty("request_counts").GetProperty("failed").GetInt64(),
                DurationSeconds = ended.GetProperty("duration_seconds").GetDouble(),
                WaitedAfterMeasurementSeconds = Math.Round(waitWatch.Elapsed.TotalSeconds, 2),
                UpstreamCalls = stats.Requests,
            },
        };
    }

    /// <summary>An inline batch of <paramref name="count"/> short prompts.</summary>
    private static byte[] CreateBody(int count)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model", "gpt-4o-mini");
            json.WriteStartArray("requests");
            for (var i = 0; i < count; i++)
            {
                json.WriteStartObject();
                json.WriteString("custom_id", $"r{i}");
                json.WriteString("prompt", $"Label the sentiment of review {i}: arrived late, works well.");
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private static async Task<(double Ms, JsonElement Batch)> CreateAsync(HttpClient client, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var start = Stopwatch.GetTimestamp();
        using var response = await client.PostAsync(new Uri("v1/batches", UriKind.Relative), content);
        var answer = await response.Content.ReadAsByteArrayAsync();
        var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"POST /v1/batches answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(answer)}");
        }

        return (ms, JsonDocument.Parse(answer).RootElement.Clone());
    }

    /// <summary>
    /// <paramref name="reads"/> rounds of one status read, one <c>/health</c> read and one store
    /// read, each timed on its own; the batch's progress is taken from the first and last status.
    /// </summary>
    private static async Task<PhaseFigures> MeasureAsync(HttpClient client, IBatchStore store, string id, Uri statusPath, Uri healthPath, int reads)
    {
        var status = new double[reads];
        var health = new double[reads];
        var storeReads = new double[reads];
        byte[] first = [], last = [];
        var gen0 = GC.CollectionCount(0);
        var gen1 = GC.CollectionCount(1);
        var gen2 = GC.CollectionCount(2);
        var paused = GC.GetTotalPauseDuration();
        var allocated = GC.GetTotalAllocatedBytes();
        using var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var machine = MachineTicks();
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < reads; i++)
        {
            var start = Stopwatch.GetTimestamp();
            var answer = await GetAsync(client, statusPath);
            status[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (i == 0)
            {
                first = answer;
            }

            last = answer;
            start = Stopwatch.GetTimestamp();
            await GetAsync(client, healthPath);
            health[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            start = Stopwatch.GetTimestamp();
            _ = await store.GetBatchAsync(id, CancellationToken.None) ?? throw new InvalidOperationException($"The store has no batch {id}.");
            storeReads[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        var seconds = watch.Elapsed.TotalSeconds;
        process.Refresh();
        var cpuShare = seconds > 0 ? (process.TotalProcessorTime - cpu).TotalSeconds / (seconds * Environment.ProcessorCount) : 0;
        var atStart = reads > 0 ? Progress.Of(first) : Progress.None;
        var atEnd = reads > 0 ? Progress.Of(last) : Progress.None;
        return new PhaseFigures(
            Math.Round(seconds, 2),
            Percentiles.Of(status),
            Percentiles.Of(health),
            Percentiles.Of(storeReads),
            status.Count(ms => ms >= 5),
            atStart,
            atEnd,
            seconds > 0 ? Math.Round((atEnd.Finished - atStart.Finished) / seconds) : 0,
            Math.Round(cpuShare, 2),
            MachineShare(machine, MachineTicks()),
            LoadAverage(),
            GC.CollectionCount(0) - gen0,
            GC.CollectionCount(1) - gen1,
            GC.CollectionCount(2) - gen2,
            Math.Round((GC.GetTotalPauseDuration() - paused).TotalMilliseconds, 1),
            (GC.GetTotalAllocatedBytes() - allocated) / 1048576,
            last.Length);
    }

    /// <summary>Busy and total ticks of all cores since boot, from <c>/proc/stat</c>; null elsewhere.</summary>
    private static (long Busy, long Total)? MachineTicks()
    {
        if (!File.Exists("/proc/stat"))
        {
            return null;
        }

        var ticks = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(t => long.Parse(t, System.Globalization.CultureInfo.InvariantCulture)).ToArray();

        // user nice system idle iowait irq softirq steal ...: idle and iowait are the only idle ones.
        var total = ticks.Take(8).Sum();
        return (total - ticks[3] - ticks[4], total);
    }

    private static double? MachineShare((long Busy, long Total)? before, (long Busy, long Total)? after) =>
        before is { } b && after is { } a && a.Total > b.Total ? Math.Round((double)(a.Busy - b.Busy) / (a.Total - b.Total), 2) : null;

    private static double? LoadAverage() =>
        File.Exists("/proc/loadavg")
            ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)
            : null;

    private static async Task<byte[]> GetAsync(HttpClient client, Uri path)
    {
        using var response = await client.GetAsync(path);
        var answer = await response.Content.ReadAsByteArrayAsync();
        return response.IsSuccessStatusCode
            ? answer
            : throw new InvalidOperationException($"GET {path} answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(answer)}");
    }

    private static async Task<JsonElement> WaitForEndAsync(HttpClient client, Uri statusPath)
    {
        var deadline = TimeProvider.System.GetUtcNow() + TimeSpan.FromMinutes(30);
        while (true)
        {
            var batch = JsonDocument.Parse(await GetAsync(client, statusPath)).RootElement.Clone();
            if (batch.GetProperty("status").GetString() is "completed" or "failed" or "cancelled" or "expired")
            {
                return batch;
            }

            if (TimeProvider.System.GetUtcNow() > deadline)
            {
                throw new TimeoutException($"The batch did not end within 30 minutes: {batch}");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100), TimeProvider.System);
        }
    }
}

/// <summary>Latencies of one kind of read, in milliseconds.</summary>
internal sealed record Percentiles(double P50, double P90, double P99, double Max, double Mean)
{
    public static Percentiles Of(double[] ms)
    {
        if (ms.Length == 0)
        {
            return new Percentiles(0, 0, 0, 0, 0);
        }

        var sorted = ms.Order().ToArray();

        // Nearest rank: the smallest latency that at least p of the reads did not exceed.
        double At(double p) => Math.Round(sorted[Math.Max(0, (int)Math.Ceiling(p * sorted.Length) - 1)], 3);
        return new Percentiles(At(0.50), At(0.90), At(0.99), Math.Round(sorted[^1], 3), Math.Round(sorted.Average(), 3));
    }
}

/// <summary>A batch's progress as one status read answered it.</summary>
internal sealed record Progress(string Status, long Total, long Completed, long Failed)
{
    public static readonly Progress None = new("none", 0, 0, 0);

    public long Finished => Completed + Failed;

    /// <summary>Still being dispatched: in progress, with requests not yet finished.</summary>
    public bool InFlight => Status == "in_progress" && Finished < Total;

    public static Progress Of(byte[] answer)
    {
        using var document = JsonDocument.Parse(answer);
        var batch = document.RootElement;
        var counts = batch.GetProperty("request_counts");
        return new Progress(
            batch.GetProperty("status").GetString()!,
            counts.GetProperty("total").GetInt64(),
            counts.GetProperty("completed").GetInt64(),
            counts.GetProperty("failed").GetInt64());
    }
}

/// <summary>The figures of one phase (the batch running, or ended).</summary>
/// <param name="Seconds">Wall time of the phase's reads.</param>
/// <param name="Status"><c>GET /v1/batches/{id}</c> over HTTP.</param>
/// <param name="Health"><c>GET /health</c> over HTTP, the baseline.</param>
/// <param name="StoreRead">The store's <c>GetBatchAsync</c> called in-process: the SQLite part of a status read.</param>
/// <param name="StatusReadsOver5Ms">Status reads that took 5 ms or more.</param>
/// <param name="AtStart">The batch as the phase's first status read saw it.</param>
/// <param name="AtEnd">The batch as the phase's last status read saw it.</param>
/// <param name="RequestsFinishedPerSecond">The dispatch rate during the phase, from the two reads.</param>
/// <param name="CpuShare">The process's CPU time over the phase's wall time on all cores (1 is every core busy).</param>
/// <param name="MachineCpuShare">The share of all cores busy with any process during the phase (Linux): above <paramref name="CpuShare"/>, other processes ran.</param>
/// <param name="LoadAverage">The machine's one-minute load average at the end of the phase (Linux), to tell a busy machine.</param>
/// <param name="Gen0Collections">Garbage collections of the process (server, simulator and client) during the phase.</param>
/// <param name="Gen1Collections">Of generation 1.</param>
/// <param name="Gen2Collections">Of generation 2.</param>
/// <param name="GcPauseMs">Time the process was paused for collections during the phase.</param>
/// <param name="AllocatedMb">Memory the process allocated during the phase.</param>
/// <param name="StatusBodyBytes">The size of a status answer.</param>
internal sealed record PhaseFigures(
    double Seconds,
    Percentiles Status,
    Percentiles Health,
    Percentiles StoreRead,
    int StatusReadsOver5Ms,
    Progress AtStart,
    Progress AtEnd,
    double RequestsFinishedPerSecond,
    double CpuShare,
    double? MachineCpuShare,
    double? LoadAverage,
    int Gen0Collections,
    int Gen1Collections,
    int Gen2Collections,
    double GcPauseMs,
    long AllocatedMb,
    int StatusBodyBytes);
