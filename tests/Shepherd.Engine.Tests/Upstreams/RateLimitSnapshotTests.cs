using System.Net.Http.Headers;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Upstreams;

public sealed class RateLimitSnapshotTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);

    private static HttpResponseHeaders Headers(params (string Name, string Value)[] headers)
    {
        var response = new HttpResponseMessage();
        foreach (var (name, value) in headers)
        {
            response.Headers.TryAddWithoutValidation(name, value);
        }

        return response.Headers;
    }

    [Theory]
    [InlineData("1s", 1000)]
    [InlineData("6m0s", 360_000)]
    [InlineData("12ms", 12)]
    [InlineData("1h2m3.5s", 3_723_500)]
    [InlineData("1.5s", 1500)]
    [InlineData("250us", 0.25)]
    [InlineData("0.75", 750)]
    public void Durations_AreReadAsOpenAIWritesThem(string text, double milliseconds)
    {
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), RateLimitSnapshot.ParseDuration(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("soon")]
    [InlineData("5x")]
    [InlineData("-1")]
    [InlineData("s")]
    public void NonsenseDurations_AreNull(string text)
    {
        Assert.Null(RateLimitSnapshot.ParseDuration(text));
    }

    [Fact]
    public void OpenAIHeaders_AreRead()
    {
        var snapshot = RateLimitSnapshot.Read(Headers(
            ("x-ratelimit-limit-requests", "3000"), ("x-ratelimit-remaining-requests", "2999"), ("x-ratelimit-reset-requests", "20ms"),
            ("x-ratelimit-limit-tokens", "500000"), ("x-ratelimit-remaining-tokens", "499000"), ("x-ratelimit-reset-tokens", "120ms")), T0);

        Assert.Equal(new RateLimitSnapshot
        {
            RequestLimit = 3000,
            RequestsRemaining = 2999,
            RequestsReset = TimeSpan.FromMilliseconds(20),
            TokenLimit = 500_000,
            TokensRemaining = 499_000,
            TokensReset = TimeSpan.FromMilliseconds(120),
        }, snapshot);
    }

    [Fact]
    public void AnthropicHeaders_AreRead_WithResetTimesAsDurations_AndSplitTokenLimitsApart()
    {
        var snapshot = RateLimitSnapshot.Read(Headers(
            ("anthropic-ratelimit-requests-limit", "50"), ("anthropic-ratelimit-requests-reset", "2026-11-28T12:00:01.500Z"),
            ("anthropic-ratelimit-input-tokens-limit", "40000"), ("anthropic-ratelimit-input-tokens-reset", "2026-11-28T12:00:03Z"),
            ("anthropic-ratelimit-output-tokens-limit", "8000"), ("anthropic-ratelimit-output-tokens-reset", "2026-11-28T12:00:00.250Z"),
            // The tokens-* headers repeat the tighter of the two: they are not a third limit.
            ("anthropic-ratelimit-tokens-limit", "40000"), ("anthropic-ratelimit-tokens-reset", "2026-11-28T12:00:03Z")), T0);

        Assert.Equal(50, snapshot?.RequestLimit);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), snapshot?.RequestsReset);
        Assert.Equal(40_000, snapshot?.InputTokenLimit);
        Assert.Equal(TimeSpan.FromSeconds(3), snapshot?.InputTokensReset);
        Assert.Equal(8_000, snapshot?.OutputTokenLimit);
        Assert.Equal(TimeSpan.FromMilliseconds(250), snapshot?.OutputTokensReset);
        Assert.Null(snapshot?.TokenLimit);
        Assert.Null(snapshot?.TokensReset);
    }

    [Fact]
    public void AnthropicTokensHeaders_AloneAreOneTokenLimit()
    {
        var snapshot = RateLimitSnapshot.Read(Headers(("anthropic-ratelimit-tokens-limit", "90000"), ("anthropic-ratelimit-tokens-reset", "2026-11-28T12:00:00.020Z")), T0);

        Assert.Equal(90_000, snapshot?.TokenLimit);
        Assert.Equal(TimeSpan.FromMilliseconds(20), snapshot?.TokensReset);
    }

    [Theory]
    [InlineData("6m0s", 360_000)]
    [InlineData("1s", 1000)]
    [InlineData("20ms", 20)]
    [InlineData("0.5s", 500)]
    [InlineData("1m30.5s", 90_500)]
    public void OpenAIResetDurations_InEveryFormTheyUse(string header, int milliseconds)
    {
        var snapshot = RateLimitSnapshot.Read(Headers(("x-ratelimit-limit-tokens", "500000"), ("x-ratelimit-reset-tokens", header)), T0);

        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), snapshot?.TokensReset);
    }

    [Fact]
    public void AnswersWithoutRateLimitHeaders_HaveNoSnapshot()
    {
        Assert.Null(RateLimitSnapshot.Read(Headers(("x-request-id", "r1")), T0));
    }
}
