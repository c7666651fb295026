using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// What looking every request up in the answer cache costs when nothing is found there: the same
/// input run with the cache (an empty one, so every lookup misses and every answer is written
/// behind) and with <c>--no-cache</c>, alternately, against one fast, unlimited simulator.
/// Each row is one run's sending rate; the result compares the medians.
/// </summary>
internal static class CacheLookupScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 20_000);
        var rounds = args.Int("rounds", 3);
        using var workload = Workload.Create(count, keepBodies: false);
        var options = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1) };
        await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(3)), 0, CancellationToken.None);
        var rows = new List<(string Cache, double RequestsPerSecond, double DispatchSeconds)>();
        for (var round = 0; round < rounds; round++)
        {
            foreach (var cache in new[] { "off", "on" })
            {
                string[] more = cache == "off" ? ["--concurrency", "64", "--no-cache"] : ["--concurrency", "64"];
                var run = await ShepherdRun.StartAsync(workload.Path, server.BaseUrl, more);
                rows.Add((cache, run.Seconds("requests_per_second"), run.DispatchSeconds));
            }
        }

        double Median(string cache) => rows.Where(r => r.Cache == cache).Select(r => r.RequestsPerSecond).Order().ElementAt(rounds / 2);
        return new
        {
            Scenario = "cache-lookup",
            Machine = Machine.Describe(),
            Requests = count,
            Rounds = rounds,
            Rows = rows.Select(r => new { r.Cache, r.RequestsPerSecond, r.DispatchSeconds }),
            MedianRequestsPerSecondWithout = Median("off"),
            MedianRequestsPerSecondWith = Median("on"),
            CostOfThroughput = Math.Round(1 - (Median("on") / Median("off")), 3),
        };
    }
}
