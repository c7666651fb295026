using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// A batch against a faulty provider (500s, 503s, dropped connections, hung requests): every
/// request must succeed, no custom_id may be recorded twice, and the only work done twice is
/// the hung requests' (a hang is executed, then times out and is sent again).
/// </summary>
internal static class FaultScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 5000);
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
            Scenario = "faults",
            Machine = Machine.Describe(),
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
}
