using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// Faulty providers. <c>mixed</c>: a batch against a provider with many kinds of faults at once
/// (500s, 503s, dropped connections, hung requests): every request must succeed, no custom_id may
/// be recorded twice, and the only work done twice is the hung requests'. <c>sprinkles</c>: the
/// same batch against a clean provider and against one that answers 2% of requests with one
/// kind of transient fault, side by side in every round, at each latency: what a sprinkle of
/// faults costs in time.
/// </summary>
internal static class FaultScenario
{
    /// <summary>The faults of the sprinkle table, each at 2% of requests, after a clean provider as the baseline.</summary>
    private static readonly (string Name, Action<SimulatorOptions> Apply)[] Sprinkles =
    [
        ("none", _ => { }),
        ("503", o => o.Error503Rate = 0.02),
        ("500", o => o.Error500Rate = 0.02),
        ("502 (HTML page)", o => o.Error502Rate = 0.02),
        ("529", o => o.Error529Rate = 0.02),
        ("connection reset", o => o.ResetRate = 0.02),
        ("503 with retry-after: 1", o =>
        {
            o.Error503Rate = 0.02;
            o.ErrorRetryAfter = TimeSpan.FromSeconds(1);
        }),
    ];

    public static async Task<object> RunAsync(BenchArgs args)
    {
        var part = args.Text("part", "all");
        return new
        {
            Scenario = "faults",
            Machine = Machine.Describe(),
            Mixed = part is "all" or "mixed" ? await MixedAsync(args) : null,
            Sprinkles = part is "all" or "sprinkles" ? await SprinklesAsync(args) : null,
        };
    }

    private static async Task<object> MixedAsync(BenchArgs args)
    {
        var count = args.Int("mixed-requests", 5000);
        var timeout = args.Int("timeout", 5);
        using var workload = Workload.Create(count);
        var options = new SimulatorOptions
        {
            Latency = TimeSpan.FromMilliseconds(20),
            Jitter = TimeSpan.FromMilliseconds(10),
            Error500Rate = 0.05,
            Error503Rate = 0.02,
            ResetRate = 0.02,
            HangRate = 0.005,
        };
        await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(3)), 0, CancellationToken.None);
        var run = await ShepherdRun.StartAsync(workload.Path, server.BaseUrl, "--timeout", ShepherdRun.Text(timeout), "--max-attempts", "10", "--concurrency", "32");
        var output = Path.ChangeExtension(workload.Path, null) + ".out.jsonl";
        var ids = File.ReadLines(output).Select(line => System.Text.Json.JsonDocument.Parse(line).RootElement.GetProperty("custom_id").GetString()).ToList();
        var stats = server.Provider.Stats();
        return new
        {
            Requests = count,
            Faults = new { options.Error500Rate, options.Error503Rate, options.ResetRate, options.HangRate },
            RequestTimeoutSeconds = timeout,
            WallSeconds = run.WallSeconds,
            Succeeded = run.Number("succeeded"),
            Failed = run.Number("failed"),
            OutputLines = ids.Count,
            DistinctCustomIds = ids.Distinct().Count(),
            UpstreamCalls = stats.Requests,
            ByStatus = stats.ByStatus,
            Resets = stats.Resets,
            Hangs = stats.Hangs,
            DuplicateExecutions = stats.Duplicates,
        };
    }

    /// <summary>
    /// Every round runs the batch once against each provider of <see cref="Sprinkles"/>, the clean
    /// one first, so each faulty run is compared with a clean run of the same round (the machine is
    /// shared, and its speed drifts between rounds more than within one).
    /// </summary>
    private static async Task<object> SprinklesAsync(BenchArgs args)
    {
        var count = args.Int("requests", 3000);
        var rounds = args.Int("rounds", 3);
        var latencies = args.Text("latencies", "50,250").Split(',').Select(int.Parse).ToList();
        using var workload = Workload.Create(count);
        var rows = new List<object>();
        foreach (var latency in latencies)
        {
            var runs = Sprinkles.ToDictionary(s => s.Name, _ => new List<(ShepherdRun Run, SimulatorStats Stats, double Ratio)>());
            for (var round = 0; round < rounds; round++)
            {
                double? clean = null;
                foreach (var (name, apply) in Sprinkles)
                {
                    var options = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(latency), Jitter = TimeSpan.FromMilliseconds(latency / 5.0) };
                    apply(options);
                    await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(100 + round)), 0, CancellationToken.None);
                    var run = await ShepherdRun.StartAsync(workload.Path, server.BaseUrl, "--concurrency", "32");
                    clean ??= run.DispatchSeconds;
                    runs[name].Add((run, server.Provider.Stats(), run.DispatchSeconds / clean.Value));
                    await Console.Error.WriteLineAsync($"faults: {latency} ms, round {round + 1}, {name}: {run.DispatchSeconds:0.00} s ({run.DispatchSeconds / clean.Value:0.000} of clean)");
                }
            }

            rows.AddRange(Sprinkles.Select(s =>
            {
                var measured = runs[s.Name];
                return (object)new
                {
                    LatencyMs = latency,
                    Fault = s.Name,
                    Rounds = rounds,
                    MedianDispatchSeconds = OverheadScenario.Median(measured.Select(m => m.Run.DispatchSeconds)),
                    MedianProcessSeconds = OverheadScenario.Median(measured.Select(m => m.Run.WallSeconds)),
                    MedianRatio = Math.Round(OverheadScenario.Median(measured.Select(m => m.Ratio)), 3),
                    WorstRatio = Math.Round(measured.Max(m => m.Ratio), 3),
                    Succeeded = measured.Min(m => m.Run.Number("succeeded")),
                    UpstreamCalls = OverheadScenario.Median(measured.Select(m => (double)m.Stats.Requests)),
                    Retries = OverheadScenario.Median(measured.Select(m => (double)m.Run.Number("retries"))),
                };
            }));
        }

        return new { Requests = count, Concurrency = 32, FaultShare = 0.02, Rows = rows };
    }
}
