using System.Text.Json;
using Shepherd.Simulator;

namespace Shepherd.Server.Tests;

/// <summary>
/// Answers checked on the server: a batch-level <c>output_schema</c> on the inline door, requests
/// that ask for their own, a provider that breaks some answers; the batch object, its result lines
/// and <c>/metrics</c> say how the checks came out.
/// </summary>
public sealed class StructuredOutputServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Schema = """{"type":"object","properties":{"sentiment":{"enum":["positive","neutral","negative"]},"score":{"type":"integer"}},"required":["sentiment","score"],"additionalProperties":false}""";

    private static readonly string[] Sentiments = ["positive", "neutral", "negative"];

    private static string Requests(int count) => string.Join(',', Enumerable.Range(1, count).Select(i =>
        $$"""{"custom_id":"r{{i}}","body":{"messages":[{"role":"user","content":"Review {{i}}"}],"max_tokens":40,"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":""" + Schema + "}}}}"));

    [Fact]
    public async Task BrokenAnswers_AreAskedAgain_AndTheBatchTheLinesAndTheMetricsSaySo()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), BrokenJsonRate = 0.3, SchemaBreakRate = 0.2 });

        var (status, created) = await server.PostAsync("/v1/batches", $$"""{"model":"gpt-4o-mini","max_invalid_attempts":1,"requests":[{{Requests(60)}}]}""");
        Assert.Equal(200, status);
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);

        var checks = ended.GetProperty("output_checks");
        var (first, reasked, invalid) = (checks.GetProperty("valid_first").GetInt64(), checks.GetProperty("valid_reasked").GetInt64(), checks.GetProperty("invalid").GetInt64());
        Assert.Equal(60, checks.GetProperty("checked").GetInt64());
        Assert.Equal(60, first + reasked + invalid);
        Assert.True(reasked > 0 && invalid > 0, ended.GetRawText());
        Assert.Equal(invalid, ended.GetProperty("request_counts").GetProperty("failed").GetInt64());
        Assert.Equal(reasked + invalid, checks.GetProperty("reasked").GetInt64());
        Assert.True(checks.GetProperty("reask_cost_usd").GetDecimal() > 0);
        Assert.Equal(Math.Round((double)first / 60, 4), checks.GetProperty("valid_first_share").GetDouble());

        var (_, page) = await server.GetAsync($"/v1/batches/{ended.GetProperty("id").GetString()}/results?limit=100");
        foreach (var line in page.GetProperty("data").EnumerateArray())
        {
            var response = line.GetProperty("response");
            Assert.Equal(200, response.GetProperty("status_code").GetInt32());
            if (line.GetProperty("status").GetString() == "failed")
            {
                // The last answer is kept, with why it failed.
                var error = line.GetProperty("error");
                Assert.Equal("invalid_output", error.GetProperty("code").GetString());
                Assert.StartsWith("the answer ", error.GetProperty("message").GetString(), StringComparison.Ordinal);
                Assert.Equal(JsonValueKind.Object, response.GetProperty("body").ValueKind);
            }
            else
            {
                var content = response.GetProperty("body").GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
                using var answer = JsonDocument.Parse(content);
                Assert.Contains(answer.RootElement.GetProperty("sentiment").GetString(), Sentiments);
            }
        }

        using var scraper = server.Client(null);
        var metrics = await scraper.GetStringAsync("/metrics", Ct);
        var lines = metrics.Split('\n');
        // Servers of other tests in this process export through meters of the same name, so only the
        // series are checked here; their values, on a server alone in its process, by the CLI's MetricsTests.
        Assert.Contains(lines, l => l.StartsWith("shepherd_output_requests_total{", StringComparison.Ordinal) && l.Contains("outcome=\"invalid\"", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("shepherd_output_reasks_total", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheMetadataKey_SetsHowOftenAnInlineBatchAsksAgain()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), BrokenJsonRate = 1 });

        var (_, created) = await server.PostAsync("/v1/batches", $$"""{"model":"gpt-4o-mini","metadata":{"shepherd_max_invalid_attempts":"0"},"requests":[{{Requests(4)}}]}""");
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);

        var checks = ended.GetProperty("output_checks");
        Assert.Equal((4L, 0L), (checks.GetProperty("invalid").GetInt64(), checks.GetProperty("reasked").GetInt64()));
        Assert.Equal(4, server.Simulator.Provider.Stats().Requests);
    }

    [Theory]
    [InlineData("""{"output_schema":"not a schema"}""", "output_schema")]
    [InlineData("""{"output_schema":{"type":"no-such-type"}}""", "output_schema")]
    [InlineData("""{"output_schema":{"type":"string","pattern":"(unclosed"}}""", "output_schema")]
    [InlineData("""{"output_schema":{"$ref":"https://schemas.example/review.json"}}""", "output_schema")]
    [InlineData("""{"max_invalid_attempts":-1}""", "max_invalid_attempts")]
    [InlineData("""{"metadata":{"shepherd_max_invalid_attempts":"abc"}}""", "metadata.shepherd_max_invalid_attempts")]
    [InlineData("""{"metadata":{"shepherd_max_invalid_attempts":"11"},"max_invalid_attempts":1}""", "metadata.shepherd_max_invalid_attempts")]
    [InlineData("""{"max_invalid_attempts":11}""", "max_invalid_attempts")]
    [InlineData("""{"max_invalid_attempts":"2"}""", "max_invalid_attempts")]
    public async Task ABadSchemaOrLimit_IsA400NamingTheField_AndCreatesNothing(string fields, string param)
    {
        await using var server = await RunningServer.StartAsync();
        var body = fields[..^1] + ""","model":"gpt-4o-mini","requests":[{"custom_id":"a","prompt":"hi"}]}""";

        var (status, error) = await server.PostAsync("/v1/batches", body);

        Assert.Equal(400, status);
        Assert.Equal(param, error.GetProperty("error").GetProperty("param").GetString());
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Empty(list.GetProperty("data").EnumerateArray());
    }
}
