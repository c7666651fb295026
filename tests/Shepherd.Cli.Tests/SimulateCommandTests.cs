using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

public sealed partial class SimulateCommandTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    [GeneratedRegex(@"listening on (http://127\.0\.0\.1:\d+)")]
    private static partial Regex ListeningOn();

    [Fact]
    public async Task Simulate_ServesOverHttp_WithTheLimitsItWasGiven()
    {
        using var simulator = ShepherdProcess.Start(_folder.Path, ["simulate", "--port", "0", "--rpm", "60", "--api-key", "k"]);
        var line = await simulator.WaitForOutputAsync("listening on");
        var root = new Uri(ListeningOn().Match(line).Groups[1].Value + "/");
        using var client = new HttpClient { BaseAddress = root };
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "k");
        var ct = TestContext.Current.CancellationToken;

        using var first = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), new StringContent("""{"model":"m","messages":[{"role":"user","content":"hi"}]}"""), ct);
        using var second = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), new StringContent("""{"model":"m","messages":[{"role":"user","content":"hi"}]}"""), ct);
        var stats = JsonDocument.Parse(await client.GetStringAsync(new Uri("_sim/stats", UriKind.Relative), ct)).RootElement;

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        Assert.Equal("60", second.Headers.GetValues("x-ratelimit-limit-requests").Single());
        Assert.Equal(2, stats.GetProperty("requests").GetInt32());
        // The 429 did no work, so nothing was executed twice.
        Assert.Equal(0, stats.GetProperty("duplicates").GetInt32());
    }

    [Fact]
    public async Task Simulate_RunsBatchesAndAFlexTier_AsItsOptionsSay()
    {
        using var simulator = ShepherdProcess.Start(_folder.Path, ["simulate", "--port", "0", "--batch-latency", "0s", "--batch-expire", "1", "--batch-cancel-latency", "0", "--flex-unavailable", "1"]);
        var line = await simulator.WaitForOutputAsync("listening on");
        using var client = new HttpClient { BaseAddress = new Uri(ListeningOn().Match(line).Groups[1].Value + "/") };
        var ct = TestContext.Current.CancellationToken;

        using var flex = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), new StringContent("""{"model":"m","service_tier":"flex","messages":[]}"""), ct);
        using var batch = await client.PostAsync(new Uri("v1/messages/batches", UriKind.Relative),
            new StringContent("""{"requests":[{"custom_id":"a","params":{"model":"m","max_tokens":5,"messages":[]}}]}"""), ct);
        var created = JsonDocument.Parse(await batch.Content.ReadAsStringAsync(ct)).RootElement;
        var bad = await ShepherdProcess.RunAsync(_folder.Path, "simulate", "--batch-latency", "2");

        Assert.Equal(HttpStatusCode.TooManyRequests, flex.StatusCode);
        Assert.Contains("resource_unavailable", await flex.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        Assert.Equal("ended", created.GetProperty("processing_status").GetString());
        Assert.Equal(1, created.GetProperty("request_counts").GetProperty("expired").GetInt32());
        Assert.True(bad.ExitCode == 2, bad.ToString());
        Assert.Contains("--batch-latency is a duration with its unit, such as 24h, 90m or 30s; got '2'.", bad.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Simulate_RefusesAWrongKeyWith403_WhenToldTo_AndOnly401Or403()
    {
        using var simulator = ShepherdProcess.Start(_folder.Path, ["simulate", "--port", "0", "--api-key", "k", "--refused-key-status", "403"]);
        var line = await simulator.WaitForOutputAsync("listening on");
        using var client = new HttpClient { BaseAddress = new Uri(ListeningOn().Match(line).Groups[1].Value + "/") };
        var ct = TestContext.Current.CancellationToken;

        using var refused = await client.PostAsync(new Uri("v1/messages", UriKind.Relative), new StringContent("""{"model":"m","max_tokens":5,"messages":[]}"""), ct);
        var bad = await ShepherdProcess.RunAsync(_folder.Path, "simulate", "--refused-key-status", "402");

        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Contains("permission_error", await refused.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        Assert.True(bad.ExitCode == 2, bad.ToString());
        Assert.Contains("--refused-key-status is one of 401, 403; got '402'.", bad.Stderr, StringComparison.Ordinal);
    }
}
