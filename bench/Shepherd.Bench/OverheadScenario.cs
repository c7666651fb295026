using System.Diagnostics;
using System.Net.Http.Headers;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// Shepherd's own cost: a batch against an instant, unlimited simulator over HTTP, run by a bare
/// HttpClient loop, by <c>shepherd run</c> (durable, SQLite) and by a <c>shepherd serve</c> node
/// through its OpenAI file path (upload, batch, download), all at the same concurrency and
/// alternating in the same process run so all see the same machine. With <c>--aot PATH</c>, the
/// Native AOT binary (<c>dotnet publish src/Shepherd.Cli -r linux-x64 -c Release</c>) runs the
/// same batch too, beside the JIT build.
/// </summary>
internal static class OverheadScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 20_000);
        var concurrency = args.Int("concurrency", 64);
        var rounds = args.Int("rounds", 3);
        var aot = args.Text("aot", "") is { Length: > 0 } path ? Path.GetFullPath(path) : null;
        using var workload = Workload.Create(count);
        var fresh = new List<RunFigures>();
        var baseline = new List<RunFigures>();
        var shepherd = new List<RunFigures>();
        var server = new List<RunFigures>();
        var native = new List<RunFigures>();
        for (var round = 1; round <= rounds; round++)
        {
            fresh.Add(await FreshBaselineAsync(workload, concurrency));
            await Console.Error.WriteLineAsync($"round {round}: bare HttpClient loop in a fresh process {fresh[^1].RequestsPerSecond:0} req/s");
            baseline.Add(await BaselineAsync(workload, concurrency));
            await Console.Error.WriteLineAsync($"round {round}: bare HttpClient loop in the bench process {baseline[^1].RequestsPerSecond:0} req/s");
            shepherd.Add(await ShepherdAsync(workload, concurrency));
            await Console.Error.WriteLineAsync($"round {round}: shepherd run {shepherd[^1].RequestsPerSecond:0} req/s end to end");
            if (aot is not null)
            {
                native.Add(await ShepherdAsync(workload, concurrency, aot));
                await Console.Error.WriteLineAsync($"round {round}: shepherd run (Native AOT) {native[^1].RequestsPerSecond:0} req/s end to end, peak {native[^1].PeakMemoryMb} MB");
            }

            server.Add(await ServerAsync(workload, concurrency));
            await Console.Error.WriteLineAsync($"round {round}: shepherd serve {server[^1].RequestsPerSecond:0} req/s from upload to download, peak {server[^1].PeakMemoryMb} MB");
        }

        var freshRate = Median(fresh.Select(r => r.RequestsPerSecond));
        var warmRate = Median(baseline.Select(r => r.RequestsPerSecond));
        var runRate = Median(shepherd.Select(r => r.RequestsPerSecond));
        var dispatchRate = Median(shepherd.Select(r => r.DispatchRequestsPerSecond!.Value));
        var serverRate = Median(server.Select(r => r.RequestsPerSecond));
        double? nativeRate = native.Count > 0 ? Median(native.Select(r => r.RequestsPerSecond)) : null;
        return new
        {
            Scenario = "overhead",
            Machine = Machine.Describe(),
            Requests = count,
            Concurrency = concurrency,
            Rounds = rounds,
            BaselineRequestsPerSecond = Math.Round(freshRate),
            WarmBaselineRequestsPerSecond = Math.Round(warmRate),
            ShepherdRequestsPerSecond = Math.Round(runRate),
            ShepherdDispatchRequestsPerSecond = Math.Round(dispatchRate),
            ServerRequestsPerSecond = Math.Round(serverRate),
            Ratio = Math.Round(runRate / freshRate, 3),
            DispatchRatio = Math.Round(dispatchRate / freshRate, 3),
            ServerRatio = Math.Round(serverRate / freshRate, 3),
            NativeRequestsPerSecond = nativeRate is { } rate ? Math.Round(rate) : (double?)null,
            NativeRatio = nativeRate is { } nr ? Math.Round(nr / freshRate, 3) : (double?)null,
            RatioToWarm = Math.Round(runRate / warmRate, 3),
            DispatchRatioToWarm = Math.Round(dispatchRate / warmRate, 3),
            ServerRatioToWarm = Math.Round(serverRate / warmRate, 3),
            FreshBaseline = fresh,
            Baseline = baseline,
            Shepherd = shepherd,
            Server = server,
            Native = native,
        };
    }

    /// <summary>The bare loop in the bench process, which hosts the simulator too and is warm after the first round.</summary>
    private static async Task<RunFigures> BaselineAsync(Workload workload, int concurrency)
    {
        await using var server = await StartSimulatorAsync();
        var (seconds, failed) = await LoopAsync(server.BaseUrl, workload.Bodies, concurrency);
        var stats = server.Provider.Stats();
        return new RunFigures(Math.Round(seconds, 3), Math.Round(workload.Bodies.Count / seconds), null, null, Process.GetCurrentProcess().PeakWorkingSet64 / 1048576, stats.Requests, stats.Duplicates, failed);
    }

    /// <summary>
    /// The bare loop in a process of its own (<c>Shepherd.Bench loop</c>), started cold as every
    /// <c>shepherd run</c> is; the clock runs from its first request to its last answer.
    /// </summary>
    private static async Task<RunFigures> FreshBaselineAsync(Workload workload, int concurrency)
    {
        await using var server = await StartSimulatorAsync();
        var (_, _, figures) = await ChildProcess.RunJsonAsync(
            [typeof(OverheadScenario).Assembly.Location, "loop", "--url", server.BaseUrl.ToString(), "--file", workload.Path, "--concurrency", ShepherdRun.Text(concurrency)],
            exit => exit == 0, "The bare loop");
        var seconds = figures.GetProperty("seconds").GetDouble();
        var stats = server.Provider.Stats();
        return new RunFigures(Math.Round(seconds, 3), Math.Round(workload.Count / seconds), null, null,
            figures.GetProperty("peak_memory_mb").GetInt64(), stats.Requests, stats.Duplicates, figures.GetProperty("failed").GetInt32());
    }

    /// <summary>The <c>loop</c> scenario: the bare loop over a workload file's bodies against <c>--url</c>, in this process.</summary>
    public static async Task<object> LoopProcessAsync(BenchArgs args)
    {
        var bodies = new List<byte[]>();
        foreach (var line in File.ReadLines(args.Text("file", "")))
        {
            using var document = System.Text.Json.JsonDocument.Parse(line);
            bodies.Add(System.Text.Encoding.UTF8.GetBytes(document.RootElement.GetProperty("body").GetRawText()));
        }

        var (seconds, failed) = await LoopAsync(new Uri(args.Text("url", "")), bodies, args.Int("concurrency", 64));
        return new { Seconds = seconds, Failed = failed, PeakMemoryMb = Process.GetCurrentProcess().PeakWorkingSet64 / 1048576 };
    }

    /// <summary>Sends every body once, <paramref name="concurrency"/> at a time, reading each answer whole; no store, no retries.</summary>
    private static async Task<(double Seconds, int Failed)> LoopAsync(Uri baseUrl, IReadOnlyList<byte[]> bodies, int concurrency)
    {
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency }) { BaseAddress = baseUrl };
        var target = new Uri("v1/chat/completions", UriKind.Relative);
        var next = -1;
        var failed = 0;
        var watch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < bodies.Count)
            {
                using var content = new ByteArrayContent(bodies[i]);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                using var request = new HttpRequestMessage(HttpMethod.Post, target) { Content = content };
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "bench");
                using var response = await client.SendAsync(request);
                await response.Content.ReadAsByteArrayAsync();
                if (!response.IsSuccessStatusCode)
                {
                    Interlocked.Increment(ref failed);
                }
            }
        }));
        return (watch.Elapsed.TotalSeconds, failed);
    }

    /// <summary><c>shepherd run</c> of the workload: the JIT build, or the native binary at <paramref name="binary"/>.</summary>
    private static async Task<RunFigures> ShepherdAsync(Workload workload, int concurrency, string? binary = null)
    {
        await using var server = await StartSimulatorAsync();
        var run = binary is null
            ? await ShepherdRun.StartAsync(workload.Path, server.BaseUrl, "--concurrency", ShepherdRun.Text(concurrency))
            : await ShepherdRun.StartNativeAsync(binary, workload.Path, server.BaseUrl, "--concurrency", ShepherdRun.Text(concurrency));
        var stats = server.Provider.Stats();
        return new RunFigures(
            run.WallSeconds,
            Math.Round(workload.Bodies.Count / run.WallSeconds),
            run.DispatchSeconds,
            Math.Round(workload.Bodies.Count / run.DispatchSeconds),
            run.Number("peak_working_set_bytes") / 1048576,
            stats.Requests,
            stats.Duplicates,
            (int)run.Number("failed"))
        {
            ImportSeconds = run.Seconds("import_seconds"),
            ExportSeconds = run.Seconds("export_seconds"),
            CpuSeconds = run.Seconds("cpu_seconds"),
        };
    }

    /// <summary>
    /// A <c>shepherd serve</c> node on a fresh store: the clock runs from the start of the upload
    /// to the end of the download; the peak memory is the node's, read before it stops.
    /// </summary>
    private static async Task<RunFigures> ServerAsync(Workload workload, int concurrency)
    {
        var count = workload.Count;
        await using var simulator = await StartSimulatorAsync();
        await using var node = await ServeNode.StartFreshAsync(simulator.BaseUrl, concurrency, new FileInfo(workload.Path).Length, count);
        var run = await node.RunFileBatchAsync(workload.Path, Path.Combine(node.Folder, "output.jsonl"), count);
        var peak = node.PeakRssBytes();
        var stats = simulator.Provider.Stats();
        return new RunFigures(run.WallSeconds, Math.Round(count / run.WallSeconds), null, null, peak / 1048576, stats.Requests, stats.Duplicates, (int)run.Failed)
        {
            UploadSeconds = run.UploadSeconds,
            DownloadSeconds = run.DownloadSeconds,
        };
    }

    /// <summary>A fresh instant, unlimited simulator on a free port.</summary>
    internal static Task<SimulatorServer> StartSimulatorAsync() =>
        SimulatorServer.StartAsync(new SimulatedProvider(new SimulatorOptions(), TimeProvider.System, new Random(1)), 0, CancellationToken.None);

    internal static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }
}

/// <summary>The figures of one run.</summary>
/// <param name="WallSeconds">Wall time of the whole run; for <c>shepherd run</c> the process from start to exit, with import and export; for <c>shepherd serve</c> from the start of the upload to the end of the download.</param>
/// <param name="RequestsPerSecond">Requests over <paramref name="WallSeconds"/>.</param>
/// <param name="DispatchSeconds"><c>shepherd run</c> only: the time spent sending, from its own summary.</param>
/// <param name="DispatchRequestsPerSecond"><c>shepherd run</c> only: requests over <paramref name="DispatchSeconds"/>.</param>
/// <param name="PeakMemoryMb">Peak working set of the process that sent the requests (for the server, its VmHWM while it runs).</param>
/// <param name="UpstreamCalls">Requests the simulator received.</param>
/// <param name="Duplicates">Requests the simulator received more than once.</param>
/// <param name="Failed">Requests that did not succeed.</param>
internal sealed record RunFigures(double WallSeconds, double RequestsPerSecond, double? DispatchSeconds, double? DispatchRequestsPerSecond, long PeakMemoryMb, long UpstreamCalls, long Duplicates, int Failed)
{
    /// <summary><c>shepherd run</c> only: reading the input into the store.</summary>
    public double? ImportSeconds { get; init; }

    /// <summary><c>shepherd run</c> only: writing the output files from the store.</summary>
    public double? ExportSeconds { get; init; }

    /// <summary><c>shepherd run</c> only: CPU time of the whole process, user and system.</summary>
    public double? CpuSeconds { get; init; }

    /// <summary><c>shepherd serve</c> only: the upload of the input file.</summary>
    public double? UploadSeconds { get; init; }

    /// <summary><c>shepherd serve</c> only: the download of the output file.</summary>
    public double? DownloadSeconds { get; init; }
}
