using System.Diagnostics;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// The provider goes down for a while in the middle of a batch: the batch must finish once it
/// is back, with no request failed for the outage.
/// </summary>
internal static class OutageScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 2000);
        var downAfter = TimeSpan.FromSeconds(args.Int("down-after", 5));
        var downFor = TimeSpan.FromSeconds(args.Int("down-for", 30));
        using var workload = Workload.Create(count);
        var options = new SimulatorOptions { RequestsPerMinute = 6000, Latency = TimeSpan.FromMilliseconds(50), Jitter = TimeSpan.FromMilliseconds(20) };
        await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(5)), 0, CancellationToken.None);
        var provider = server.Provider;
        var watch = Stopwatch.StartNew();
        var running = ShepherdRun.StartAsync(workload.Path, server.BaseUrl, "--concurrency", "16");
        await Task.Delay(downAfter, TimeProvider.System);
        var before = provider.Stats();
        provider.Down = true;
        await Task.Delay(downFor, TimeProvider.System);
        provider.Down = false;
        var during = provider.Stats();
        var run = await running;
        var stats = provider.Stats();
        return new
        {
            Scenario = "outage",
            Machine = Machine.Describe(),
            Requests = count,
            DownAfterSeconds = downAfter.TotalSeconds,
            DownForSeconds = downFor.TotalSeconds,
            AnsweredBeforeOutage = before.ByStatus.GetValueOrDefault(200),
            ConnectionsRefusedDuringOutage = during.Resets - before.Resets,
            WallSeconds = Math.Round(watch.Elapsed.TotalSeconds, 2),
            Succeeded = run.Number("succeeded"),
            Failed = run.Number("failed"),
            UpstreamCalls = stats.Requests,
            DuplicateExecutions = stats.Duplicates,
        };
    }
}
