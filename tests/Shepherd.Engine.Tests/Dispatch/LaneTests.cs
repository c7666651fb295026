using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class LaneTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);

    private static Lane Create(LaneLimits? limits = null, DispatchOptions? options = null, string? key = null)
    {
        options ??= new DispatchOptions { LimitHeadroom = 0 };
        var client = new UpstreamClient(new HttpClient(), new UpstreamOptions
        {
            BaseUrl = new Uri("http://upstream.test/v1"),
            Limits = limits ?? new LaneLimits(),
            ApiKey = key is null ? null : new Secret(key),
        }, TimeProvider.System);
        return new Lane(new UpstreamEndpoint(client, options), "gpt-4.1-mini", options, T0);
    }

    private static UpstreamResponse Ok(RateLimitSnapshot? limits = null) => new() { StatusCode = 200, RateLimits = limits };

    /// <summary>Completes a request with the verdict the dispatcher would give its answer.</summary>
    private static LaneChange Complete(Lane lane, SentRequest reservation, UpstreamResponse response, int output, DateTimeOffset now) =>
        lane.Complete(reservation, response, response.StatusCode switch
        {
            >= 200 and < 300 => Verdict.Success,
            401 or 403 => Verdict.Refused,
            null or 408 or 429 or >= 500 => Verdict.Transient,
            _ => Verdict.Permanent,
        }, output, now);

    [Fact]
    public void ConfiguredLimits_HoldBackTheNextRequest()
    {
        var lane = Create(new LaneLimits { RequestsPerMinute = 60, TokensPerMinute = 6000 });

        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(50, 40, T0));
        lane.Admit(50, 40, T0);

        Assert.Equal(TimeSpan.FromSeconds(1), lane.WaitBeforeAdmitting(10, 0, T0));
        Assert.True(lane.CountsTokens);
    }

    [Fact]
    public void Limits_AreLearnedFromTheProvidersHeaders_WhenNotConfigured()
    {
        var lane = Create();
        Assert.False(lane.CountsTokens);
        var reservation = lane.Admit(10, 10, T0);

        Complete(lane, reservation, Ok(new RateLimitSnapshot { RequestLimit = 600, TokenLimit = 60_000, RequestsReset = TimeSpan.Zero, TokensReset = TimeSpan.Zero }), 5, T0);

        Assert.Equal((600.0, 60_000.0), (lane.RequestsPerMinute, lane.TokensPerMinute));
        Assert.True(lane.CountsTokens);
    }

    [Fact]
    public void AProviderLimitBelowTheConfiguredOne_Wins_AndAnswersToOlderRequestsDoNotUndoIt()
    {
        var lane = Create(new LaneLimits { RequestsPerMinute = 600 });
        var older = lane.Admit(1, 1, T0);
        var newer = lane.Admit(1, 1, T0.AddMilliseconds(100));

        Complete(lane, newer, Ok(new RateLimitSnapshot { RequestLimit = 300 }), 1, T0.AddMilliseconds(300));
        Assert.Equal(300, lane.RequestsPerMinute);
        Complete(lane, older, Ok(new RateLimitSnapshot { RequestLimit = 600 }), 1, T0.AddMilliseconds(400));
        Assert.Equal(300, lane.RequestsPerMinute);

        // A higher limit announced later still stops at the configured one.
        Complete(lane, lane.Admit(1, 1, T0.AddSeconds(1)), Ok(new RateLimitSnapshot { RequestLimit = 6000 }), 1, T0.AddSeconds(1));
        Assert.Equal(600, lane.RequestsPerMinute);
    }

    [Fact]
    public void SplitTokenLimits_AreBucketsOfTheirOwn_AndOutputNotWrittenIsGivenBack()
    {
        var lane = Create(new LaneLimits { InputTokensPerMinute = 6000, OutputTokensPerMinute = 600 });
        Assert.True(lane.CountsTokens);
        Assert.Equal(6000, lane.TokensPerMinute);

        // 50 input tokens and a max_tokens of 5 fill both buckets' room (half of each second's worth, a new lane's margin).
        var sent = lane.Admit(50, 5, T0);
        Assert.Equal(TimeSpan.FromSeconds(0.5), lane.WaitBeforeAdmitting(1, 5, T0));

        // The answer wrote 1 token of 5: the output bucket gets 4 back, and a request of 4 fits.
        Complete(lane, sent, Ok(), 1, T0);
        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(0, 4, T0));
    }

    [Fact]
    public void A429_HoldsBackMoreOfABucketTheProviderReportsOn_OncePerBurst_AndOtherAnswersWearItDown()
    {
        var lane = Create(new LaneLimits { RequestsPerMinute = 600 }, new DispatchOptions { LimitHeadroom = 0, Concurrency = 64, InitialConcurrency = 64 });
        static RateLimitSnapshot Empty() => new() { RequestLimit = 600, RequestsReset = TimeSpan.Zero };
        // Answers wear the new lane's margin of a half down to none.
        for (var i = 0; i < 600; i++)
        {
            Complete(lane, lane.Admit(1, 1, T0), Ok(Empty()), 1, T0);
        }

        Assert.Equal(TimeSpan.Zero, WaitAfter(lane, 9, T0.AddSeconds(10)));

        // Two 429s of one burst hold back a tenth of the 10 a second: 9 fit, the 10th waits.
        Complete(lane, lane.Admit(1, 1, T0.AddSeconds(30)), new UpstreamResponse { StatusCode = 429, RateLimits = Empty() }, 0, T0.AddSeconds(30));
        Complete(lane, lane.Admit(1, 1, T0.AddSeconds(30)), new UpstreamResponse { StatusCode = 429, RateLimits = Empty() }, 0, T0.AddSeconds(30));
        Assert.Equal(TimeSpan.Zero, WaitAfter(lane, 8, T0.AddSeconds(40)));
        Assert.NotEqual(TimeSpan.Zero, WaitAfter(lane, 9, T0.AddSeconds(60)));

        static TimeSpan? WaitAfter(Lane lane, int requests, DateTimeOffset at)
        {
            for (var i = 0; i < requests; i++)
            {
                lane.Admit(1, 1, at);
            }

            var wait = lane.WaitBeforeAdmitting(1, 1, at);
            lane.Complete(lane.Admit(1, 1, at.AddSeconds(10)), Ok(Empty()), Verdict.Success, 1, at.AddSeconds(10));
            return wait;
        }
    }

    [Fact]
    public void WithoutHeaders_A429CutsTheRate_AndAnswersToLaterRequestsBringItBack()
    {
        var lane = Create(new LaneLimits { RequestsPerMinute = 600 });
        var before = lane.Admit(1, 1, T0);
        for (var i = 0; i < 10; i++)
        {
            Complete(lane, lane.Admit(1, 1, T0), Ok(), 1, T0);
        }

        // Most of what went was taken: the cut is 15%.
        Complete(lane, lane.Admit(1, 1, T0), new UpstreamResponse { StatusCode = 429 }, 0, T0);
        Assert.Equal(510, lane.RequestsPerMinute!.Value, 6);

        // An answer to a request sent before the cut says nothing of the rate as it is now.
        Complete(lane, before, Ok(), 1, T0.AddMilliseconds(10));
        Assert.Equal(510, lane.RequestsPerMinute!.Value, 6);
        for (var i = 0; i < 200; i++)
        {
            Complete(lane, lane.Admit(1, 1, T0.AddSeconds(1)), Ok(), 1, T0.AddSeconds(1));
        }

        Assert.Equal(600, lane.RequestsPerMinute!.Value, 6);
    }

    [Fact]
    public void WithNothingSettingALimit_A429SetsOne_BelowWhatTheProviderTookOverTheLastSeconds()
    {
        var lane = Create();
        for (var i = 0; i < 40; i++)
        {
            // 20 a second for two seconds, all taken.
            var at = T0.AddMilliseconds(i * 50);
            Complete(lane, lane.Admit(1, 1, at), Ok(), 1, at);
        }

        Assert.Null(lane.RequestsPerMinute);
        Complete(lane, lane.Admit(1, 1, T0.AddSeconds(2)), new UpstreamResponse { StatusCode = 429 }, 0, T0.AddSeconds(2));

        // 40 taken over the last two seconds is 1,200 a minute; the cut takes 15% off.
        Assert.Equal(1200 * 0.85, lane.RequestsPerMinute!.Value, 6);
    }

    [Fact]
    public void ConfiguredLimits_AreNotReplacedByHeaders_AndKeepTheHeadroom()
    {
        var lane = Create(new LaneLimits { TokensPerMinute = 1000 }, new DispatchOptions());
        var reservation = lane.Admit(10, 10, T0);

        Complete(lane, reservation, Ok(new RateLimitSnapshot { TokenLimit = 60_000 }), 5, T0);

        Assert.Equal(980, lane.TokensPerMinute!.Value, 6);
    }

    [Fact]
    public void RetryAfter_PausesTheWholeLane()
    {
        var lane = Create();
        var reservation = lane.Admit(10, 10, T0);

        Complete(lane, reservation, new UpstreamResponse { StatusCode = 429, RetryAfter = TimeSpan.FromSeconds(3) }, 0, T0);

        Assert.Equal(TimeSpan.FromSeconds(3), lane.WaitBeforeAdmitting(1, 0, T0));
        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(1, 0, T0.AddSeconds(3)));
    }

    [Fact]
    public void ALoneOverloadSignal_AmongSuccesses_NeitherHalvesTheConcurrency_NorPausesTheLane()
    {
        var lane = Create(options: new DispatchOptions { InitialConcurrency = 8, LimitHeadroom = 0 });
        for (var i = 0; i < 40; i++)
        {
            Complete(lane, lane.Admit(10, 10, T0), Ok(), 5, T0);
        }

        var limit = lane.Concurrency.Limit;
        Complete(lane, lane.Admit(10, 10, T0), new UpstreamResponse { StatusCode = 503, RetryAfter = TimeSpan.FromSeconds(5) }, 0, T0);
        Complete(lane, lane.Admit(10, 10, T0), new UpstreamResponse { FailureCode = FailureCodes.RequestTimeout }, 0, T0);

        Assert.Equal(limit, lane.Concurrency.Limit);
        Assert.False(lane.InFailureRun);
        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(1, 0, T0));
    }

    [Fact]
    public void ARunOfOverloadSignals_HalvesTheConcurrency_AndItsRetryAfterPausesTheLane()
    {
        var lane = Create(options: new DispatchOptions { InitialConcurrency = 8, LimitHeadroom = 0, ConcurrencyCoolDown = TimeSpan.Zero, BreakerFailuresToOpen = 100 });
        for (var i = 0; i < FailureWindow.RunThreshold - 1; i++)
        {
            Complete(lane, lane.Admit(10, 10, T0), new UpstreamResponse { StatusCode = 503 }, 0, T0);
        }

        Assert.Equal(8, lane.Concurrency.Limit);
        Complete(lane, lane.Admit(10, 10, T0), new UpstreamResponse { StatusCode = 529, RetryAfter = TimeSpan.FromSeconds(2) }, 0, T0);

        Assert.True(lane.InFailureRun);
        Assert.Equal(4, lane.Concurrency.Limit);
        Assert.Equal(TimeSpan.FromSeconds(2), lane.WaitBeforeAdmitting(1, 0, T0));
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
            Complete(lane, reservation, Ok(new RateLimitSnapshot { TokenLimit = 60_000, TokensReset = TimeSpan.FromSeconds(providerLevel / 1000) }), 20, now);
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
            Complete(lane, lane.Admit(1, 1, T0), new UpstreamResponse { FailureCode = FailureCodes.ConnectionError }, 0, T0);
        }

        Assert.Equal(BreakerState.Open, lane.Upstream.Breaker.State);
        Assert.Equal(TimeSpan.FromSeconds(2), lane.WaitBeforeAdmitting(1, 0, T0));
        Assert.Equal(0, lane.Upstream.InFlight);
    }

    private static UpstreamResponse Refused(string message = "Incorrect API key provided.") => new()
    {
        StatusCode = 401,
        Body = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new { error = new { message, type = "invalid_request_error", code = "invalid_api_key" } }),
    };

    [Fact]
    public void AfterARefusal_NothingMoreGoes_UntilTheRequestsInFlightAreBack()
    {
        var lane = Create();
        var first = lane.Admit(1, 1, T0);
        var second = lane.Admit(1, 1, T0);

        var change = Complete(lane, first, Refused(), 0, T0);

        Assert.Equal(KeyChange.None, change.Key);
        Assert.Null(lane.WaitBeforeAdmitting(1, 0, T0));
        Complete(lane, second, Ok(), 1, T0);
        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(1, 0, T0));
        Assert.Null(lane.Halt);
    }

    [Fact]
    public void AFewRefusalsInARow_StopTheLane_WhichThenOnlyProbes_AndAnAcceptedKeyStartsIt()
    {
        var options = new DispatchOptions { LimitHeadroom = 0, RefusalsToStop = 3, RefusedKeyProbeInterval = TimeSpan.FromSeconds(30) };
        var lane = Create(options: options, key: "sk-wrong-key");
        var sent = Enumerable.Range(0, 3).Select(_ => lane.Admit(1, 1, T0)).ToList();

        var changes = sent.Select(r => Complete(lane, r, Refused("Incorrect API key provided: sk-wrong-key."), 0, T0).Key).ToList();

        Assert.Equal([KeyChange.None, KeyChange.None, KeyChange.Refused], changes);
        var halt = Assert.IsType<LaneHalt>(lane.Halt);
        Assert.Equal((LaneCondition.KeyRefused, T0, T0.AddSeconds(30)), (halt.Condition, halt.Since, halt.NextProbeAt));
        Assert.Equal("HTTP 401: Incorrect API key provided: ***.", halt.Reason);
        Assert.Equal(TimeSpan.FromSeconds(30), lane.WaitBeforeAdmitting(1, 0, T0));

        // One probe at a time, no sooner than the interval.
        var probe = lane.Admit(1, 1, T0.AddSeconds(30));
        Assert.NotEqual(TimeSpan.Zero, lane.WaitBeforeAdmitting(1, 0, T0.AddSeconds(30)));
        Complete(lane, probe, Refused(), 0, T0.AddSeconds(31));
        Assert.Equal(TimeSpan.FromSeconds(29), lane.WaitBeforeAdmitting(1, 0, T0.AddSeconds(31)));

        var accepted = Complete(lane, lane.Admit(1, 1, T0.AddSeconds(60)), new UpstreamResponse { StatusCode = 400 }, 0, T0.AddSeconds(61));
        Assert.Equal(KeyChange.Accepted, accepted.Key);
        Assert.Null(lane.Halt);
        Assert.Equal(TimeSpan.Zero, lane.WaitBeforeAdmitting(1, 0, T0.AddSeconds(61)));
    }

    [Fact]
    public void AShortKey_IsMaskedOnlyWhereItStandsAlone_InTheProvidersMessage()
    {
        var lane = Create(new LaneLimits { MaxConcurrency = 1 }, key: "k");

        Complete(lane, lane.Admit(1, 1, T0), Refused("This key may not use this model; got k."), 0, T0);

        Assert.Equal("HTTP 401: This key may not use this model; got ***.", lane.Halt!.Reason);
    }

    [Fact]
    public void ALaneOfOneRequest_StopsAtTheFirstRefusal()
    {
        var lane = Create(new LaneLimits { MaxConcurrency = 1 });

        Assert.Equal(KeyChange.Refused, Complete(lane, lane.Admit(1, 1, T0), Refused(), 0, T0).Key);
    }

    [Fact]
    public void FailuresWithoutAnAnswer_NeitherCountAsRefusals_NorEndThem()
    {
        var lane = Create(options: new DispatchOptions { LimitHeadroom = 0, RefusalsToStop = 2, BreakerFailuresToOpen = 100 });

        Complete(lane, lane.Admit(1, 1, T0), Refused(), 0, T0);
        Complete(lane, lane.Admit(1, 1, T0), new UpstreamResponse { FailureCode = FailureCodes.ConnectionError }, 0, T0);
        var second = Complete(lane, lane.Admit(1, 1, T0), Refused(), 0, T0);

        Assert.Equal(KeyChange.Refused, second.Key);
    }

    [Fact]
    public void AnOpenBreaker_TakesTheLaneForDown_SinceTheFirstFailureOfItsRun_WithTheLastReason()
    {
        var lane = Create(options: new DispatchOptions { BreakerFailuresToOpen = 3, LimitHeadroom = 0 });

        Complete(lane, lane.Admit(1, 1, T0), new UpstreamResponse { FailureCode = FailureCodes.ConnectionError, FailureMessage = "connection failed: Connection refused" }, 0, T0);
        Complete(lane, lane.Admit(1, 1, T0), new UpstreamResponse { StatusCode = 502 }, 0, T0.AddSeconds(1));
        Assert.Null(lane.Halt);
        var change = Complete(lane, lane.Admit(1, 1, T0), new UpstreamResponse { FailureCode = FailureCodes.ConnectionError, FailureMessage = "connection failed: Connection refused" }, 0, T0.AddSeconds(2));

        Assert.Equal(BreakerChange.Opened, change.Breaker);
        var halt = Assert.IsType<LaneHalt>(lane.Halt);
        Assert.Equal((LaneCondition.Down, T0, "connection failed: Connection refused", T0.AddSeconds(4)), (halt.Condition, halt.Since, halt.Reason, halt.NextProbeAt));
        Assert.Equal(BreakerChange.Closed, Complete(lane, lane.Admit(1, 1, T0.AddSeconds(4)), Ok(), 1, T0.AddSeconds(4)).Breaker);
        Assert.Null(lane.Halt);
    }
}
