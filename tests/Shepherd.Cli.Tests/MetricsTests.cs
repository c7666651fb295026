using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary><c>/metrics</c> of a real <c>shepherd serve</c> after a small batch: names, labels and values.</summary>
public sealed partial class MetricsTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task AfterABatch_TheMetricsCountItsRequestsTokensCostAndRetries()
    {
        // One answer in five is a 500: retried, and counted as such.
        using var server = ShepherdProcess.Start(_folder.Path, [
            "serve", "--urls", "http://127.0.0.1:0", "--store", _folder.File("s.db"), "--gateway-key", "sk-metrics",
            "--provider", "sim", "--sim-latency", "5", "--sim-jitter", "0", "--sim-fail-500", "0.2", "--concurrency", "4"]);
        var url = (await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
        using var http = new HttpClient { BaseAddress = new Uri(url) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk-metrics");
        var requests = string.Join(",", Enumerable.Range(0, 20).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""));
        using var created = await http.PostAsync("/v1/batches", new StringContent($$"""{"model":"gpt-4o-mini","requests":[{{requests}}]}""", Encoding.UTF8, "application/json"), Ct);
        var id = JsonDocument.Parse(await created.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString();
        var batch = await Poll.UntilAsync(async () => JsonDocument.Parse(await http.GetStringAsync($"/v1/dashboard/batches/{id}", Ct)).RootElement.GetProperty("batch").Clone(),
            b => b.GetProperty("status").GetString() == "completed", TimeSpan.FromMinutes(1), Ct);

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
        Assert.Equal(batch.GetProperty("cost_usd").GetDouble(), Sum(metrics, "shepherd_cost_USD_total", "model=\"gpt-4o-mini\""), 9);
        Assert.Equal(20 + failures, Sum(metrics, "shepherd_upstream_duration_seconds_count"));
        Assert.Equal(0, Sum(metrics, "shepherd_dispatch_in_flight"));
        Assert.Equal(4, Sum(metrics, "shepherd_lane_concurrency_limit", "upstream=\"sim\"", "model=\"gpt-4o-mini\""), 0);
        Assert.Equal(0, Sum(metrics, "shepherd_upstream_breaker_state", "upstream=\"sim\""));
        Assert.True(Sum(metrics, "shepherd_store_commit_duration_seconds_count") >= 1);
        Assert.Contains(metrics, m => m.Name == "http_server_request_duration_seconds_count");
        // Labels name things, never keys or prompts.
        Assert.DoesNotContain(metrics, m => m.Labels.Contains("sk-metrics", StringComparison.Ordinal) || m.Labels.Contains("question", StringComparison.Ordinal));
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
}
