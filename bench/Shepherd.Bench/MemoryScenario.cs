using System.Text.Json.Serialization;

namespace Shepherd.Bench;

/// <summary>
/// Shepherd's peak memory at two batch sizes (<c>--small</c>, <c>--large</c>) of small prompts,
/// against an instant simulator in this process: <c>shepherd run FILE</c> (its own
/// <c>peak_working_set_bytes</c>) and a <c>shepherd serve</c> node on a fresh store through the
/// OpenAI file path (streamed upload, batch, streamed download; its VmHWM read before it stops).
/// Memory that stays flat from the small batch to the large one is what a streaming engine should show.
/// </summary>
internal static class MemoryScenario
{
    /// <summary>The peak the figures are held to.</summary>
    private const double LimitMb = 400;

    public static async Task<object> RunAsync(BenchArgs args)
    {
        var small = args.Int("small", 10_000);
        var large = args.Int("large", 1_000_000);
        var concurrency = args.Int("concurrency", 64);
        var sizes = new List<SizeFigures>();
        foreach (var count in new[] { small, large })
        {
            // The bench keeps no bodies: a million of them would sit in this process for nothing.
            using var workload = Workload.Create(count, keepBodies: false);
            var run = await RunAsync(workload, concurrency);
            await Console.Error.WriteLineAsync($"{count} requests: shepherd run peak {run.PeakMb} MB in {run.WallSeconds} s");
            var serve = await ServeAsync(workload, concurrency);
            await Console.Error.WriteLineAsync($"{count} requests: shepherd serve peak {serve.PeakMb} MB in {serve.WallSeconds} s");
            sizes.Add(new SizeFigures(count, run, serve));
        }

        return new
        {
            Scenario = "memory",
            Machine = Machine.Describe(),
            Concurrency = concurrency,
            PeakNote = "run: peak_working_set_bytes of its --json summary; serve: VmHWM of the server process, read before it stops",
            Small = sizes[0],
            Large = sizes[1],
            RunLargeToSmall = Math.Round(sizes[1].Run.PeakMb / sizes[0].Run.PeakMb, 3),
            ServeLargeToSmall = Math.Round(sizes[1].Serve.PeakMb / sizes[0].Serve.PeakMb, 3),
        };
    }

    private static async Task<ModeFigures> RunAsync(Workload workload, int concurrency)
    {
        await using var simulator = await OverheadScenario.StartSimulatorAsync();
        var run = await ShepherdRun.StartAsync(workload.Path, simulator.BaseUrl, "--concurrency", ShepherdRun.Text(concurrency));
        if (run.Number("succeeded") != workload.Count)
        {
            throw new InvalidOperationException($"shepherd run succeeded with {run.Number("succeeded")} of {workload.Count} requests.");
        }

        return new ModeFigures(workload.Count, Mb(run.Number("peak_working_set_bytes")), run.WallSeconds);
    }

    private static async Task<ModeFigures> ServeAsync(Workload workload, int concurrency)
    {
        await using var simulator = await OverheadScenario.StartSimulatorAsync();
        await using var node = await ServeNode.StartFreshAsync(simulator.BaseUrl, concurrency, new FileInfo(workload.Path).Length, workload.Count);
        var run = await node.RunFileBatchAsync(workload.Path, Path.Combine(node.Folder, "output.jsonl"), workload.Count);
        return new ModeFigures(workload.Count, Mb(node.PeakRssBytes()), run.WallSeconds);
    }

    private static double Mb(long bytes) => Math.Round(bytes / 1048576.0, 1);

    /// <summary>One batch size, both ways.</summary>
    /// <param name="Requests">Requests in the batch.</param>
    /// <param name="Run">Through <c>shepherd run</c>.</param>
    /// <param name="Serve">Through a <c>shepherd serve</c> node.</param>
    private sealed record SizeFigures(int Requests, ModeFigures Run, ModeFigures Serve);

    /// <summary>One batch through one way of running Shepherd.</summary>
    /// <param name="Requests">Requests in the batch, every one answered.</param>
    /// <param name="PeakMb">Peak resident memory of the Shepherd process.</param>
    /// <param name="WallSeconds">For <c>run</c> the process from start to exit; for <c>serve</c> from the start of the upload to the end of the download.</param>
    private sealed record ModeFigures(int Requests, double PeakMb, double WallSeconds)
    {
        /// <summary>Whether the peak stayed under 400 MB.</summary>
        [JsonPropertyName("under_400_mb")]
        public bool Under400Mb => PeakMb < LimitMb;
    }
}
