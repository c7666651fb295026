using System.Globalization;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// A batch with a deadline against a provider whose batch API answers most lines early and leaves
/// a share to expire: realtime only, native only and the planner (auto) side by side, each against
/// a fresh simulator of the same seed. Each row: what it cost against the list price and against
/// the cheapest possible (every request at the batch price), the share answered by the deadline,
/// when it finished, and the requests the provider ran twice.
/// </summary>
internal static class PlannerScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 10_000);
        var deadline = TimeSpan.FromSeconds(args.Int("deadline", 75));
        var batchLatency = TimeSpan.FromSeconds(args.Int("batch-latency", 30));
        var expire = args.Int("expire-percent", 10) / 100.0;
        var rpm = args.Int("rpm", 30_000);
        using var workload = Workload.Create(count, keepBodies: false);
        var rows = new List<object>();
        decimal? listPrice = null;
        foreach (var mode in new[] { "realtime", "native", "auto" })
        {
            var options = new SimulatorOptions
            {
                RequestsPerMinute = rpm,
                Latency = TimeSpan.FromMilliseconds(20),
                Jitter = TimeSpan.FromMilliseconds(10),
                BatchLatency = batchLatency,
                BatchExpireShare = expire,
            };
            await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(11)), 0, CancellationToken.None);
            var config = Path.Combine(workload.Folder, $"{mode}.json");
            await File.WriteAllTextAsync(config, string.Create(CultureInfo.InvariantCulture, $$"""
                {
                  "upstreams": [{ "name": "sim", "provider": "openai", "baseUrl": "{{new Uri(server.BaseUrl, "v1")}}", "apiKey": "bench", "batchApi": true, "rpm": {{rpm}} }],
                  "native": { "pollSeconds": 1, "cancelGraceSeconds": 5 }
                }
                """));
            var state = Path.Combine(workload.Folder, $"{mode}.db");
            var (seconds, _, summary) = await ChildProcess.RunJsonAsync(
                [Path.Combine(AppContext.BaseDirectory, "shepherd.dll"), "run", workload.Path, "--config", config, "--state", state,
                    "--output", Path.Combine(workload.Folder, $"{mode}.out.jsonl"), "--errors", Path.Combine(workload.Folder, $"{mode}.errors.jsonl"),
                    "--deadline", $"{(int)deadline.TotalSeconds}s", "--mode", mode, "--progress", "none", "--json", "--fresh"],
                exit => exit is 0 or 3, $"shepherd run --mode {mode}");
            var cost = summary.GetProperty("cost_usd").GetDecimal();
            listPrice ??= cost;
            var stats = server.Provider.Stats();
            var succeeded = summary.GetProperty("succeeded").GetInt64();
            var tiers = summary.GetProperty("tiers");
            rows.Add(new
            {
                Mode = mode,
                CostUsd = cost,
                CostOfListPrice = Math.Round(cost / listPrice.Value, 3),
                CostOfCheapest = Math.Round(cost / (listPrice.Value / 2), 3),
                AnsweredByDeadline = Math.Round((double)succeeded / count, 4),
                Succeeded = succeeded,
                Expired = summary.GetProperty("expired").GetInt64(),
                Failed = summary.GetProperty("failed").GetInt64(),
                FinishSeconds = Math.Round(summary.GetProperty("wall_seconds").GetDouble(), 1),
                ProcessSeconds = Math.Round(seconds, 1),
                PaidTwice = stats.Duplicates,
                Native = tiers.GetProperty("native").GetProperty("requests").GetInt64(),
                Realtime = tiers.GetProperty("realtime").GetProperty("requests").GetInt64(),
                BatchJobs = stats.Batch.Jobs,
                LinesExpired = stats.Batch.LinesExpired,
                LinesCancelled = stats.Batch.LinesCancelled,
            });
        }

        return new
        {
            Scenario = "planner",
            Machine = Machine.Describe(),
            Requests = count,
            DeadlineSeconds = deadline.TotalSeconds,
            BatchLatencySeconds = batchLatency.TotalSeconds,
            ExpireShare = expire,
            RequestsPerMinute = rpm,
            Rows = rows,
        };
    }
}
