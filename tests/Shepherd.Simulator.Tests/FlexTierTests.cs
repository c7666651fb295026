using System.Text;
using System.Text.Json;
using CsCheck;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Testing;

namespace Shepherd.Simulator.Tests;

/// <summary>OpenAI's flex tier on the simulator: refused at its share when capacity is short, and said in the answer.</summary>
public sealed class FlexTierTests
{
    private const string FlexChat = """{"model":"o4-mini","service_tier":"flex","messages":[{"role":"user","content":"Classify: the battery is great."}],"max_tokens":50}""";

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static SimulatedRequest Post(string path, string body) => new("POST", path, Encoding.UTF8.GetBytes(body));

    private static JsonElement Json(SimulatedResponse response) => JsonDocument.Parse(response.Body).RootElement.Clone();

    [Fact]
    public async Task ARefusal_IsA429ResourceUnavailable_WithoutRateLimitHeaders()
    {
        var simulator = Simulators.Create(new SimulatorOptions { FlexUnavailableRate = 1, RequestsPerMinute = 6000, TokensPerMinute = 1_000_000 }, _time);

        var refused = await simulator.HandleAsync(Post("/v1/chat/completions", FlexChat), Ct);

        Assert.Equal(429, refused.StatusCode);
        var error = Json(refused).GetProperty("error");
        Assert.Equal(["message", "type", "param", "code"], error.EnumerateObject().Select(p => p.Name));
        Assert.Equal(("resource_unavailable", "resource_unavailable"), (error.GetProperty("type").GetString(), error.GetProperty("code").GetString()));
        Assert.DoesNotContain(refused.Headers, h => h.Key.StartsWith("x-ratelimit-", StringComparison.Ordinal) || h.Key.StartsWith("retry-after", StringComparison.Ordinal));
        Assert.Contains(refused.Headers, h => h.Key == "x-request-id");
        Assert.Equal((1L, 1L), (simulator.Stats().FlexRequests, simulator.Stats().FlexRefusals));
        Assert.Empty(simulator.ExecutedCounts());
    }

    [Theory]
    [InlineData("/v1/chat/completions", FlexChat, "flex")]
    [InlineData("/v1/chat/completions", """{"model":"m","messages":[]}""", "default")]
    [InlineData("/v1/completions", """{"model":"m","prompt":"x","service_tier":"flex"}""", "flex")]
    [InlineData("/v1/completions", """{"model":"m","prompt":"x"}""", "default")]
    [InlineData("/v1/responses", """{"model":"m","input":"x","service_tier":"flex"}""", "flex")]
    [InlineData("/v1/responses", """{"model":"m","input":"x","service_tier":"auto"}""", "default")]
    public async Task AnOpenAIAnswer_SaysTheTierThatServedIt(string path, string body, string tier)
    {
        var simulator = Simulators.Create(time: _time);

        var answer = await simulator.HandleAsync(Post(path, body), Ct);

        Assert.Equal(200, answer.StatusCode);
        Assert.Equal(tier, Json(answer).GetProperty("service_tier").GetString());
        Assert.Equal(tier == "flex" ? 1 : 0, simulator.Stats().FlexRequests);
    }

    [Theory]
    [InlineData("/v1/embeddings", """{"model":"m","input":"x","service_tier":"flex"}""")]
    [InlineData("/v1/messages", """{"model":"m","max_tokens":5,"messages":[],"service_tier":"flex"}""")]
    public async Task EndpointsWithoutAFlexTier_NeitherRefuseNorSayATier(string path, string body)
    {
        var simulator = Simulators.Create(new SimulatorOptions { FlexUnavailableRate = 1 }, _time);

        var answer = await simulator.HandleAsync(Post(path, body), Ct);

        Assert.Equal(200, answer.StatusCode);
        Assert.False(Json(answer).TryGetProperty("service_tier", out _));
        Assert.Equal(0, simulator.Stats().FlexRequests);
    }

    [Fact]
    public async Task FlexRequests_GoThroughTheRealtimeLimits()
    {
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 60 }, _time);

        var first = await simulator.HandleAsync(Post("/v1/chat/completions", FlexChat), Ct);
        var limited = await simulator.HandleAsync(Post("/v1/chat/completions", FlexChat), Ct);

        Assert.Equal((200, 429), (first.StatusCode, limited.StatusCode));
        Assert.Equal("rate_limit_exceeded", Json(limited).GetProperty("error").GetProperty("code").GetString());
        Assert.Contains(limited.Headers, h => h.Key == "x-ratelimit-remaining-requests" && h.Value == "0");
        Assert.Equal((2L, 0L), (simulator.Stats().FlexRequests, simulator.Stats().FlexRefusals));
    }

    [Fact]
    public async Task TheFlexRefusalShare_IsMet_AndServedFlexAnswersSayFlex()
    {
        const int requests = 300;
        var body = Encoding.UTF8.GetBytes("""{"model":"o4-mini","service_tier":"flex","messages":[{"role":"user","content":"hi"}]}""");
        await Gen.Select(Gen.Int[1, 1_000_000], Gen.Double[0, 1]).SampleAsync(async (seed, share) =>
        {
            var simulator = Simulators.Create(new SimulatorOptions { FlexUnavailableRate = share }, new FakeTimeProvider(), seed);
            var refused = 0;

            for (var i = 0; i < requests; i++)
            {
                var answer = await simulator.HandleAsync(new SimulatedRequest("POST", "/v1/chat/completions", body), TestContext.Current.CancellationToken);
                using var json = JsonDocument.Parse(answer.Body);
                if (answer.StatusCode == 429)
                {
                    refused++;
                    Assert.Equal("resource_unavailable", json.RootElement.GetProperty("error").GetProperty("code").GetString());
                }
                else
                {
                    Assert.Equal("flex", json.RootElement.GetProperty("service_tier").GetString());
                }
            }

            Shares.AssertNear(refused, requests, share, "flex requests refused");
            Assert.Equal((requests, refused), (simulator.Stats().FlexRequests, simulator.Stats().FlexRefusals));
        }, iter: 40, threads: 1, print: t => $"seed {t.Item1}, share {t.Item2}");
    }
}
