using System.Globalization;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// What looking every request up in the answer cache costs when nothing is found there: the same
/// input run with the cache (an empty one, so every lookup misses and every answer is written
/// behind) and with <c>--no-cache</c>, against one fast, unlimited simulator. After a pair of
/// warm-up runs that are not counted, each round runs both, the order alternating from round to
/// round so that neither side always runs on a warmer or a busier machine. The result gives each
/// side's median, quartiles and range, and the cost both from the medians and as the median of the
/// rounds' own costs (each round compares two runs made seconds apart). On a machine shared with
/// other work the rates swing with that work, so each run's CPU time (user and system, of the
/// child process alone) is measured too: what the cache adds to it is the cost that does not
/// depend on what else the machine runs.
/// </summary>
internal static class CacheLookupScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 20_000);
        var rounds = args.Int("rounds", 11);
        using var workload = Workload.Create(count, keepBodies: false);
        var options = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1) };
        await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(3)), 0, CancellationToken.None);

        async Task<(double Rate, double Cpu)> RunAsync(bool cache)
        {
            string[] more = cache ? ["--concurrency", "64"] : ["--concurrency", "64", "--no-cache"];
            var before = ChildrenCpuSeconds();
            var run = await ShepherdRun.StartAsync(workload.Path, server.BaseUrl, more);
            return (run.Seconds("requests_per_second"), Math.Round(ChildrenCpuSeconds() - before, 2));
        }

        await RunAsync(cache: false);
        await RunAsync(cache: true);
        var rows = new List<(int Round, double Without, double With, double CpuWithout, double CpuWith)>();
        for (var round = 0; round < rounds; round++)
        {
            (double Rate, double Cpu) without, with;
            if (round % 2 == 0)
            {
                without = await RunAsync(cache: false);
                with = await RunAsync(cache: true);
            }
            else
            {
                with = await RunAsync(cache: true);
                without = await RunAsync(cache: false);
            }

            rows.Add((round + 1, without.Rate, with.Rate, without.Cpu, with.Cpu));
        }

        var medianWithout = Quantile(rows.Select(r => r.Without), 0.5);
        var medianWith = Quantile(rows.Select(r => r.With), 0.5);
        var costs = rows.Select(r => 1 - (r.With / r.Without)).ToList();
        return new
        {
            Scenario = "cache-lookup",
            Machine = Machine.Describe(),
            Requests = count,
            Rounds = rounds,
            Rows = rows.Select(r => new { r.Round, RequestsPerSecondWithout = r.Without, RequestsPerSecondWith = r.With, Cost = Math.Round(1 - (r.With / r.Without), 3), r.CpuWithout, r.CpuWith }),
            Without = Spread(rows.Select(r => r.Without)),
            With = Spread(rows.Select(r => r.With)),
            CostOfThroughput = Math.Round(1 - (medianWith / medianWithout), 3),
            CpuSecondsWithout = Spread(rows.Select(r => r.CpuWithout)),
            CpuSecondsWith = Spread(rows.Select(r => r.CpuWith)),
            CpuCost = Math.Round(1 - (Quantile(rows.Select(r => r.CpuWithout), 0.5) / Quantile(rows.Select(r => r.CpuWith), 0.5)), 3),
            RoundCosts = new { Median = Math.Round(Quantile(costs, 0.5), 3), Q1 = Math.Round(Quantile(costs, 0.25), 3), Q3 = Math.Round(Quantile(costs, 0.75), 3) },
        };
    }

    /// <summary>
    /// The CPU time (user and system) of this process's children that have ended, from
    /// <c>/proc/self/stat</c> (fields 16 and 17, in clock ticks of 1/100 s).
    /// </summary>
    private static double ChildrenCpuSeconds()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // Field 3 (the state) is the first after the name: field n is at n - 3.
        return (long.Parse(fields[16 - 3], CultureInfo.InvariantCulture) + long.Parse(fields[17 - 3], CultureInfo.InvariantCulture)) / 100.0;
    }

    /// <summary>The median, the quartiles and the range of one side's rates.</summary>
    private static object Spread(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return new { Median = Math.Round(Quantile(sorted, 0.5), 2), Q1 = Math.Round(Quantile(sorted, 0.25), 2), Q3 = Math.Round(Quantile(sorted, 0.75), 2), Min = sorted[0], Max = sorted[^1] };
    }

    /// <summary>The <paramref name="q"/> quantile, interpolated between the two nearest values.</summary>
    private static double Quantile(IEnumerable<double> values, double q)
    {
        var sorted = values.Order().ToList();
        var at = q * (sorted.Count - 1);
        var low = (int)Math.Floor(at);
        var high = Math.Min(low + 1, sorted.Count - 1);
        return sorted[low] + ((sorted[high] - sorted[low]) * (at - low));
    }
}
