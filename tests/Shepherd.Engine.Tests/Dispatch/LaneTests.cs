using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class LaneTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);

    private static Lane Create(LaneLimits? limits = null, DispatchOptions? options = null)
    {
        options ??= new DispatchOptions { LimitHeadroom = 0 };
        var client = new UpstreamClient(new HttpClient(), new UpstreamOptions { BaseUrl = new Uri("http://upstream.test/v1"), Limits = limits ?? new LaneLimits() }, TimeProvider.System);
        return new Lane(new UpstreamEndpoint(client, options), "gpt-4.1-mini", options, T0);
    }

    private static UpstreamResponse Ok(RateLimitSnapshot? limits = null) => new() { StatusCode = 200, RateLimits = limits };

    [Fact]
    public void ConfiguredLimits_HoldBackTheNextRequest()
    {
        var lane = Create(new LaneLimits { RequestsPerMinute = 60, TokensPerMinute = 6000 });

        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(lane.TokensFor(50, 40), T0));
        lane.Admit(50, 40, T0);

        Assert.Equal(TimeSpan.FromSeconds(1), lane.WaitBeforeAdmitting(lane.TokensFor(10, 0), T0));
        Assert.True(lane.CountsTokens);
    }

    [Fact]
    public void Limits_AreLearnedFromTheProvidersHeaders_WhenNotConfigured()
    {
        var lane = Create();
        Assert.False(lane.CountsTokens);
        var reservation = lane.Admit(10, 10, T0);

        lane.Complete(reservation, Ok(new RateLimitSnapshot { RequestLimit = 600, TokenLimit = 60_000, RequestsReset = TimeSpan.Zero, TokensReset = TimeSpan.Zero }), 10, 5, T0);

        Assert.Equal((600.0, 60_000.0), (lane.RequestsPerMinute, lane.TokensPerMinute));
        Assert.True(lane.CountsTokens);
    }

    [Fact]
    public void ConfiguredLimits_AreNotReplacedByHeaders_AndKeepTheHeadroom()
    {
        var lane = Create(new LaneLimits { TokensPerMinute = 1000 }, new DispatchOptions());
        var reservation = lane.Admit(10, 10, T0);

        lane.Complete(reservation, Ok(new RateLimitSnapshot { TokenLimit = 60_000 }), 10, 5, T0);

        Assert.Equal(980, lane.TokensPerMinute!.Value, 6);
    }

    [Fact]
    public void RetryAfter_PausesTheWholeLane()
    {
        var lane = Create();
        var reservation = lane.Admit(10, 10, T0);

        lane.Complete(reservation, new UpstreamResponse { StatusCode = 429, RetryAfter = TimeSpan.FromSeconds(3) }, 0, 0, T0);

        Assert.Equal(TimeSpan.FromSeconds(3), lane.WaitBeforeAdmitting(1, T0));
        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(1, T0.AddSeconds(3)));
    }

    [Fact]
    public void OverloadSignals_HalveTheConcurrency()
    {
        var lane = Create(options: new DispatchOptions { InitialConcurrency = 8, LimitHeadroom = 0 });
        var reservation = lane.Admit(10, 10, T0);

        lane.Complete(reservation, new UpstreamResponse { FailureCode = FailureCodes.RequestTimeout }, 0, 0, T0);

        Assert.Equal(4, lane.Concurrency.Limit);
    }

    [Fact]
    public void TheTokenCostFactor_LearnsHowTheProviderCountsPrompts()
    {
        // A provider that counts 1.5 tokens where the local tokenizer counts one, and max_tokens as is.
        var lane = Create(new LaneLimits { TokensPerMinute = 60_000 });
        var providerLevel = 0.0;
        var last = T0;
        var now = T0;
        for (var i = 0; i < 200; i++)
        {
            now = now.AddMilliseconds(100);
            var prompt = 100 + (i % 7 * 30);
            var reservation = lane.Admit(prompt, 50, now);
            providerLevel = Math.Max(0, providerLevel - (1000 * (now - last).TotalSeconds)) + (1.5 * prompt) + 50;
            last = now;
            lane.Complete(reservation, Ok(new RateLimitSnapshot { TokenLimit = 60_000, TokensReset = TimeSpan.FromSeconds(providerLevel / 1000) }), prompt, 20, now);
        }

        Assert.InRange(lane.TokenCostFactor, 1.45, 1.55);
        Assert.Equal((150 * lane.TokenCostFactor / 1.5) + 50, lane.TokensFor(100, 50), 6);
    }

    [Fact]
    public void AnOpenBreaker_HoldsTheLane()
    {
        var lane = Create(options: new DispatchOptions { BreakerFailuresToOpen = 2, LimitHeadroom = 0 });

        for (var i = 0; i < 2; i++)
        {
            lane.Complete(lane.Admit(1, 1, T0), new UpstreamResponse { FailureCode = FailureCodes.ConnectionError }, 0, 0, T0);
        }

        Assert.Equal(BreakerState.Open, lane.Upstream.Breaker.State);
        Assert.Equal(TimeSpan.FromSeconds(2), lane.WaitBeforeAdmitting(1, T0));
        Assert.Equal(0, lane.Upstream.InFlight);
    }
}
