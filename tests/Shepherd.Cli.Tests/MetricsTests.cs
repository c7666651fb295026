using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary><c>/metrics</c> of a real <c>shepherd serve</c>: the documented names from the start, and names, labels and values after a small batch.</summary>
public sealed partial class MetricsTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task AfterABatch_TheMetricsCountItsRequestsTokensCostAndRetries()
    {
        // One answer in five is a 500: retried, and counted as such.
        using var server = ShepherdProcess.Start(_folder.Path, Serve("--sim-fail-500", "0.2"));
        var url = (await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
        var batch = await RunBatchAsync(url, 20);

        // Gauges are read at scrape time: the dispatcher's next look (within a second) sees the batch ended.
        using var scraper = new HttpClient { BaseAddress = new Uri(url) };
        var metrics = await Poll.UntilAsync(async () => Parse(await scraper.GetStringAsync("/metrics", Ct)),
            m => Sum(m, "shepherd_queue_depth") == 0, TimeSpan.FromSeconds(20), Ct);

        Assert.Equal(20, Sum(metrics, "shepherd_upstream_requests_total", "outcome=\"succeeded\"", "status_code=\"200\"", "upstream=\"sim\"", "model=\"gpt-4o-mini\""));
        var failures = Sum(metrics, "shepherd_upstream_requests_total", "status_code=\"500\"");
        Assert.True(failures > 0, "the simulator answered some 500s");
        Assert.Equal(failures, Sum(metrics, "shepherd_upstream_retries_total", "reason=\"retry\""));
        Assert.Equal(batch.GetProperty("input_tokens").GetInt64(), Sum(metrics, "shepherd_upstream_tokens_total", "direction=\"input\""));
        Assert.Equal(batch.GetProperty("output_tokens").GetInt64(), Sum(metrics, "shepherd_upstream_tokens_total", "direction=\"output\""));
        Assert.Equal(batch.GetProperty("cost_usd").GetDouble(), Sum(metrics, "shepherd_cost_usd_total", "model=\"gpt-4o-mini\""), 9);
        Assert.Equal(20, Sum(metrics, "shepherd_tier_requests_total", "tier=\"realtime\""));
        Assert.Equal(0, Sum(metrics, "shepherd_tier_requests_total", "tier=\"native\""));
        Assert.Equal(batch.GetProperty("cost_usd").GetDouble(), Sum(metrics, "shepherd_tier_cost_usd_total", "tier=\"realtime\""), 9);
        Assert.Equal(0, Sum(metrics, "shepherd_tier_saved_usd_total"));
        // The server keeps no answer cache: every request was sent, none answered from one.
        Assert.Equal([0d], metrics.Where(m => m.Name == "shepherd_cache_hits_total").Select(m => m.Value));
        Assert.Equal([0d], metrics.Where(m => m.Name == "shepherd_cache_saved_usd_total").Select(m => m.Value));
        Assert.Equal(20 + failures, Sum(metrics, "shepherd_upstream_duration_seconds_count"));
        Assert.Equal(0, Sum(metrics, "shepherd_dispatch_in_flight"));
        Assert.Equal(4, Sum(metrics, "shepherd_lane_concurrency_limit", "upstream=\"sim\"", "model=\"gpt-4o-mini\""), 0);
        Assert.Equal(0, Sum(metrics, "shepherd_upstream_breaker_state", "upstream=\"sim\""));
        Assert.True(Sum(metrics, "shepherd_store_commit_duration_seconds_count") >= 1);
        Assert.Contains(metrics, m => m.Name == "http_server_request_duration_seconds_count");
        // Labels name things, never keys or prompts.
        Assert.DoesNotContain(metrics, m => m.Labels.Contains("sk-metrics", StringComparison.Ordinal) || m.Labels.Contains("question", StringComparison.Ordinal));
    }

    [Fact]
    public async Task EveryDocumentedName_IsExported_CountersFromAFreshServer_TheRestOnceABatchHasRun()
    {
        // Limits, so the lane has rates to report.
        using var server = ShepherdProcess.Start(_folder.Path, Serve("--rpm", "60000", "--tpm", "10000000"));
        var url = (await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
        using var scraper = new HttpClient { BaseAddress = new Uri(url) };
        var documented = Documented();

        var fresh = Families(await scraper.GetStringAsync("/metrics", Ct));
        await RunBatchAsync(url, 1);
        var afterBatch = Families(await scraper.GetStringAsync("/metrics", Ct));

        Assert.Contains(documented, d => d.Type == "counter");
        Assert.All(documented.Where(d => d.Type == "counter"), d => Assert.True(fresh.Contains(d.Name), $"the counter {d.Name} is missing on a fresh server: {string.Join(", ", fresh.Order(StringComparer.Ordinal))}"));
        Assert.All(documented, d => Assert.True(afterBatch.Contains(d.Name), $"{d.Name} is documented but not exported: {string.Join(", ", afterBatch.Order(StringComparer.Ordinal))}"));
        Assert.All(afterBatch.Where(n => n.StartsWith("shepherd_", StringComparison.Ordinal)), name =>
        {
            Assert.Contains(documented, d => d.Name == name);
            Assert.Matches("^[a-z][a-z0-9_]*$", name);
        });
    }

    private string[] Serve(params string[] more) =>
    [
        "serve", "--urls", "http://127.0.0.1:0", "--store", _folder.File("s.db"), "--gateway-key", "sk-metrics",
        "--provider", "sim", "--sim-latency", "5", "--sim-jitter", "0", "--concurrency", "4", .. more,
    ];

    /// <summary>Runs an inline batch of <paramref name="count"/> prompts to its end and returns it as the dashboard shows it.</summary>
    private static async Task<JsonElement> RunBatchAsync(string url, int count, string fields = "")
    {
        using var http = new HttpClient { BaseAddress = new Uri(url) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk-metrics");
        var requests = string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""));
        using var created = await http.PostAsync("/v1/batches", new StringContent($$"""{"model":"gpt-4o-mini",{{fields}}"requests":[{{requests}}]}""", Encoding.UTF8, "application/json"), Ct);
        var id = JsonDocument.Parse(await created.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString();
        return await Poll.UntilAsync(async () => JsonDocument.Parse(await http.GetStringAsync($"/v1/dashboard/batches/{id}", Ct)).RootElement.GetProperty("batch").Clone(),
            b => b.GetProperty("status").GetString() == "completed", TimeSpan.FromMinutes(1), Ct);
    }

    [Fact]
    public async Task AnswersCheckedAgainstASchema_AreCountedAsTheBatchCountsThem()
    {
        // Plain prompts checked against a batch schema: the simulator answers them in prose, which fits no schema.
        using var server = ShepherdProcess.Start(_folder.Path, Serve());
        var url = (await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
        var batch = await RunBatchAsync(url, 6, "\"output_schema\":{\"type\":\"object\"},\"max_invalid_attempts\":1,");

        using var scraper = new HttpClient { BaseAddress = new Uri(url) };
        var metrics = Parse(await scraper.GetStringAsync("/metrics", Ct));

        var checks = batch.GetProperty("output_checks");
        Assert.Equal((6L, 6L), (checks.GetProperty("invalid").GetInt64(), checks.GetProperty("reasked").GetInt64()));
        Assert.Equal(6, Sum(metrics, "shepherd_output_requests_total", "outcome=\"invalid\""));
        Assert.Equal(0, Sum(metrics, "shepherd_output_requests_total", "outcome=\"valid_first\""));
        Assert.Equal(6, Sum(metrics, "shepherd_output_reasks_total"));
        Assert.Equal(checks.GetProperty("reask_cost_usd").GetDouble(), Sum(metrics, "shepherd_output_reask_cost_usd_total"), 9);
    }

    /// <summary>The metric families of a scrape, by their <c># TYPE</c> lines.</summary>
    private static HashSet<string> Families(string text) =>
        [.. text.Split('\n').Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).Select(l => l.Split(' ')[2])];

    /// <summary>The names (first column) and types (second) of docs/observability.md's metric table.</summary>
    private static List<(string Name, string Type)> Documented()
    {
        var rows = File.ReadAllLines(RepositoryFiles.Path("docs", "observability.md"))
            .Where(l => l.StartsWith("| `shepherd_", StringComparison.Ordinal))
            .Select(l => l.Split('|'));
        return [.. rows.SelectMany(row => MetricName().Matches(row[1]).Select(m => (m.Groups[1].Value, row[2].Trim())))];
    }

    private static double Sum(List<(string Name, string Labels, double Value)> metrics, string name, params string[] labels) =>
        metrics.Where(m => m.Name == name && labels.All(label => m.Labels.Contains(label, StringComparison.Ordinal))).Sum(m => m.Value);

    private static List<(string Name, string Labels, double Value)> Parse(string text) =>
        [.. text.Split('\n')
            .Select(line => Sample().Match(line))
            .Where(match => match.Success)
            .Select(match => (match.Groups[1].Value, match.Groups[2].Value, double.Parse(match.Groups[3].Value, CultureInfo.InvariantCulture)))];

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")]
    private static partial Regex Sample();

    [GeneratedRegex("`(shepherd_[A-Za-z0-9_]+)`")]
    private static partial Regex MetricName();
}
