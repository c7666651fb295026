using CsCheck;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>What an answer does to its item, decided without a loop, a store or an upstream.</summary>
public sealed class OutcomePolicyTests
{
    private static readonly DispatchOptions Options = new()
    {
        MaxAttempts = 3,
        RetryBaseDelay = TimeSpan.FromSeconds(1),
        IsolatedRetryBaseDelay = TimeSpan.FromMilliseconds(50),
        RetryMaxDelay = TimeSpan.FromSeconds(30),
    };

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero));

    private static OutcomePolicy Lanes(int seed = 7) => OutcomePolicy.ForLanes(Options, new Random(seed));

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    public void ASuccess_Succeeds_WhateverTheAttemptOrTheLane(int attempt)
    {
        var answer = new Answer(Verdict.Success, attempt) { RateLimited = true, UpstreamDown = true, Batch = BatchStanding.Cancelled };

        Assert.Equal(new OutcomeDecision(OutcomeKind.Succeeded), Lanes().Decide(answer, _time.GetUtcNow()));
        Assert.Equal(new OutcomeDecision(OutcomeKind.Succeeded), OutcomePolicy.ForJobs(3).Decide(answer, _time.GetUtcNow()));
    }

    [Fact]
    public void APermanentFailure_Fails_WithAttemptsLeft()
    {
        var decision = Lanes().Decide(new Answer(Verdict.Permanent, 1), _time.GetUtcNow());

        Assert.Equal(OutcomeKind.Failed, decision.Kind);
        Assert.Equal(default, decision.NextAttemptAt);
    }

    [Theory]
    [InlineData(true, false, false)]
    [InlineData(false, true, false)]
    [InlineData(false, false, true)]
    public void ARefusedKey_ARateLimitOrAnOutage_WaitsForTheLane_EvenOnTheLastAttempt(bool refused, bool rateLimited, bool down)
    {
        var decision = Lanes().Decide(new Answer(refused ? Verdict.Refused : Verdict.Transient, Options.MaxAttempts) { RateLimited = rateLimited, UpstreamDown = down }, _time.GetUtcNow());

        Assert.Null(decision.Kind);
        Assert.Equal(OutcomeDecision.Requeue, decision);
    }

    [Fact]
    public void ATransientFailure_IsRetried_WhileAttemptsAreLeft_ThenFails()
    {
        var policy = Lanes();
        var now = _time.GetUtcNow();

        Assert.Equal(OutcomeKind.Retry, policy.Decide(new Answer(Verdict.Transient, 1), now).Kind);
        Assert.Equal(OutcomeKind.Retry, policy.Decide(new Answer(Verdict.Transient, Options.MaxAttempts - 1), now).Kind);
        Assert.Equal(new OutcomeDecision(OutcomeKind.Failed), policy.Decide(new Answer(Verdict.Transient, Options.MaxAttempts), now));
    }

    [Fact]
    public void AFailureAmongSuccesses_IsRetriedSoon_WhateverRetryAfterSays()
    {
        var now = _time.GetUtcNow();

        var decision = Lanes().Decide(new Answer(Verdict.Transient, 1) { RetryAfter = TimeSpan.FromMinutes(5) }, now);

        Assert.Equal(OutcomeKind.Retry, decision.Kind);
        Assert.InRange(decision.Delay, TimeSpan.Zero, Options.IsolatedRetryBaseDelay);
        Assert.Equal(now + decision.Delay, decision.NextAttemptAt);
    }

    [Fact]
    public void AFailureOfARun_WaitsAtLeastItsRetryAfter()
    {
        var now = _time.GetUtcNow();

        var decision = Lanes().Decide(new Answer(Verdict.Transient, 2) { InFailureRun = true, RetryAfter = TimeSpan.FromSeconds(20) }, now);

        Assert.Equal(TimeSpan.FromSeconds(20), decision.Delay);
        Assert.Equal(now.AddSeconds(20), decision.NextAttemptAt);
    }

    [Fact]
    public void TheBackoff_IsDrawnAsBackoffDrawsIt_FromTheRandomHandedIn()
    {
        var now = _time.GetUtcNow();
        var expected = Backoff.Delay(2, Options.RetryBaseDelay, Options.RetryMaxDelay, null, new Random(11));

        var decision = Lanes(seed: 11).Decide(new Answer(Verdict.Transient, 2) { InFailureRun = true }, now);

        Assert.Equal(expected, decision.Delay);
    }

    [Fact]
    public void ANativeJobsRetry_GoesIntoTheNextJobAtOnce()
    {
        _time.Advance(TimeSpan.FromMinutes(3));
        var now = _time.GetUtcNow();

        var decision = OutcomePolicy.ForJobs(3).Decide(new Answer(Verdict.Transient, 1) { RetryAfter = TimeSpan.FromMinutes(1) }, now);

        Assert.Equal(new OutcomeDecision(OutcomeKind.Retry, now, TimeSpan.Zero), decision);
    }

    [Theory]
    [InlineData(true, OutcomeKind.Cancelled)]
    [InlineData(false, OutcomeKind.Expired)]
    public void ATransientFailure_OfAStoppedBatch_EndsWithItsBatch(bool cancelled, OutcomeKind kind)
    {
        var standing = cancelled ? BatchStanding.Cancelled : BatchStanding.Expired;
        var policy = OutcomePolicy.ForJobs(3);
        var now = _time.GetUtcNow();

        Assert.Equal(kind, policy.Decide(new Answer(Verdict.Transient, 1) { Batch = standing }, now).Kind);
        Assert.Equal(OutcomeKind.Failed, policy.Decide(new Answer(Verdict.Permanent, 1) { Batch = standing }, now).Kind);
    }

    [Fact]
    public void NoAttemptsAtAll_CountAsOne()
    {
        Assert.Equal(OutcomeKind.Failed, OutcomePolicy.ForJobs(0).Decide(new Answer(Verdict.Transient, 1), _time.GetUtcNow()).Kind);
    }

    [Theory]
    [InlineData(BatchStatus.InProgress, false, OutcomeKind.Released)]
    [InlineData(BatchStatus.Cancelling, false, OutcomeKind.Cancelled)]
    [InlineData(BatchStatus.Cancelled, true, OutcomeKind.Cancelled)]
    [InlineData(BatchStatus.InProgress, true, OutcomeKind.Expired)]
    public void AnUnsentItem_EndsWithItsBatch_OrGoesBackUnspent(BatchStatus status, bool expired, OutcomeKind kind)
    {
        var now = _time.GetUtcNow();
        var batch = new BatchRecord { Id = "batch_1", Format = InputFormat.OpenAI, Status = status, CreatedAt = now, ExpiredAt = expired ? now : null };

        Assert.Equal(kind, OutcomePolicy.Unsent(batch));
        Assert.Equal(OutcomeKind.Released, OutcomePolicy.Unsent(null));
    }

    private static readonly Gen<Answer> Answers =
        from verdict in Gen.Enum<Verdict>()
        from attempt in Gen.Int[1, 8]
        from rateLimited in Gen.Bool
        from down in Gen.Bool
        from inRun in Gen.Bool
        from retryAfter in Gen.Int[-1, 120]
        from standing in Gen.Enum<BatchStanding>()
        select new Answer(verdict, attempt)
        {
            RateLimited = rateLimited,
            UpstreamDown = down,
            InFailureRun = inRun,
            RetryAfter = retryAfter < 0 ? null : TimeSpan.FromSeconds(retryAfter),
            Batch = standing,
        };

    [Fact]
    public void AnyAnswer_UsesAnAttemptOnlyWhenItSpeaksOfTheRequest_AndRetriesWithinTheBackoff()
    {
        var now = _time.GetUtcNow();
        Gen.Select(Answers, Gen.Int).Sample((answer, seed) =>
        {
            var decision = Lanes(seed).Decide(answer, now);
            var atJobs = OutcomePolicy.ForJobs(Options.MaxAttempts).Decide(answer, now);
            var aboutTheLane = answer.Verdict == Verdict.Refused || (answer.Verdict == Verdict.Transient && (answer.RateLimited || answer.UpstreamDown));
            var mayRetry = answer.Verdict == Verdict.Transient && !aboutTheLane && answer.Batch == BatchStanding.Running && answer.Attempt < Options.MaxAttempts;

            Assert.Equal(aboutTheLane, decision.Kind is null);
            Assert.Equal(mayRetry, decision.Kind == OutcomeKind.Retry);
            // Both policies decide alike; they differ only in how long a retry waits.
            Assert.Equal(decision.Kind, atJobs.Kind);
            if (decision.Kind == OutcomeKind.Retry)
            {
                var ceiling = answer.InFailureRun
                    ? Max(Options.RetryMaxDelay, answer.RetryAfter ?? TimeSpan.Zero)
                    : Options.IsolatedRetryBaseDelay * Math.Pow(2, answer.Attempt - 1);
                Assert.InRange(decision.Delay, TimeSpan.Zero, ceiling);
                Assert.Equal(now + decision.Delay, decision.NextAttemptAt);
                Assert.Equal(now, atJobs.NextAttemptAt);
            }
            else
            {
                Assert.Equal(default, decision.NextAttemptAt);
            }
        });
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
