using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <content>
/// How a lane keeps pace with its provider: the provider's own count of its buckets wins over the
/// lane's, a 429 grows the buckets' margins (or, where the provider says nothing of its level,
/// cuts the rate), and answers that are not 429s wear both back down.
/// </content>
internal sealed partial class Lane
{
    /// <summary>What a 429 adds to the margin of the lane's buckets, and the most they hold back.</summary>
    private const double MarginStep = 0.1;
    private const double MaxMargin = 0.75;
    private const double InitialMargin = 0.5;

    /// <summary>What each answer that is not a 429 takes off the margin: about one 429 in a hundred answers keeps it where it is.</summary>
    private const double MarginRelief = 0.001;
    private static readonly TimeSpan MarginCoolDown = TimeSpan.FromMilliseconds(200);

    /// <summary>What a 429 multiplies the rate by when the provider says nothing of its level, and how fast the rate comes back (a share per answer).</summary>
    private const double RateCut = 0.85;
    private const double RateRecoveryPerAnswer = 0.0015;
    private static readonly TimeSpan InferenceWindow = TimeSpan.FromSeconds(2);

    private double _rateScale = 1;
    private DateTimeOffset _lastRateCut = DateTimeOffset.MinValue;
    private DateTimeOffset _lastMarginStep = DateTimeOffset.MinValue;

    /// <summary>Takes the limits the provider announced and the levels it told: its count wins over the lane's own.</summary>
    private void Learn(RateLimitSnapshot snapshot, SentRequest reservation, DateTimeOffset now)
    {
        var changed = false;
        foreach (var limit in _limits)
        {
            if (snapshot.LimitOf(limit.Kind) is { } announced and > 0)
            {
                changed |= limit.Announce(announced, reservation.Sequence);
            }
        }

        if (changed)
        {
            ApplyLimits(now);
        }

        // The provider counted what it admitted up to this request; replay only what went after it.
        // Where nodes share the lane, the provider's level is theirs together: this node takes its share of it.
        foreach (var limit in _limits)
        {
            if (limit.Bucket is not { } bucket || snapshot.ResetOf(limit.Kind) is not { } reset)
            {
                continue;
            }

            limit.Observed = true;
            var perSecond = (snapshot.LimitOf(limit.Kind) ?? limit.PerMinute!.Value) / 60.0;
            var level = reset.TotalSeconds * perSecond;
            // A 429's level is the provider's without that request: as good an observation, since
            // the rejected request is left out of the sums too. With other nodes on the lane the
            // level's rise holds their requests too, so nothing is learned from it then.
            if (limit == PromptLimit && _share == 1)
            {
                _promptCost.Observe(reservation, level, perSecond, PromptLimitCountsOutput);
            }

            bucket.Sync(level * _share, reservation.At, _sends.After(reservation.Sequence).Select(s => (s.At, limit.CostOf(s))), now);
        }
    }

    /// <summary>
    /// A 429: the lane's picture of the provider was too hopeful. Where the provider says how full
    /// it is, each bucket holds back more of its second's worth; where it says nothing, the rate
    /// itself comes down (from the rate the lane was sending at, when nothing set a limit). Once
    /// per cool-down: one burst of 429s is one lesson.
    /// </summary>
    private void RateLimited(DateTimeOffset now)
    {
        if (now - _lastMarginStep >= MarginCoolDown)
        {
            // 429s that come together were sent together: they are one lesson.
            _lastMarginStep = now;
            foreach (var limit in _limits)
            {
                if (limit.Bucket is { } bucket && limit.Observed)
                {
                    bucket.Margin = Math.Min(MaxMargin, bucket.Margin + MarginStep);
                }
            }
        }

        if (_limits.Any(l => l.Observed))
        {
            return;
        }

        if (now - _lastRateCut >= RateCutCoolDown)
        {
            CutRate(now);
        }

        foreach (var limit in _limits)
        {
            // The provider is full: what the lane sends after the pause goes at the rate, not as a burst into a bucket it believes empty.
            limit.Bucket?.Fill(now);
        }
    }

    /// <summary>How long a rate cut takes to show: about the time an answer takes (between 50 ms and a second).</summary>
    private TimeSpan RateCutCoolDown => TimeSpan.FromTicks(Math.Clamp(_latency.Ticks, TimeSpan.TicksPerMillisecond * 50, TimeSpan.TicksPerSecond));

    /// <summary>
    /// Cuts the rate of a lane the provider says nothing of its level to: by <see cref="RateCut"/>,
    /// or by more when more of the requests since the last cut were turned away (the limit fell).
    /// Where nothing sets a limit, the first cut starts from what the provider took lately.
    /// </summary>
    private void CutRate(DateTimeOffset now)
    {
        var requests = Limit(LimitKind.Requests);
        var (sent, taken) = _sends.CountSince(_lastRateCut);
        if (_limits.All(l => l.PerMinute is null))
        {
            // What the provider took over the last seconds, counted over at least a second: the first wave, sent at once, is not a rate.
            var window = Math.Min(InferenceWindow.TotalSeconds, (now - (_firstSend ?? now)).TotalSeconds);
            requests.Inferred = Math.Max(1, _sends.CountSince(now - TimeSpan.FromSeconds(window)).Taken / Math.Max(1, window) * 60);
        }
        var cut = Math.Min(RateCut, Math.Max(0.5, sent == 0 ? 1 : (double)taken / sent));
        if (requests.IsInferred)
        {
            requests.Inferred *= cut;
        }
        else
        {
            _rateScale = Math.Max(0.05, _rateScale * cut);
        }

        _lastRateCut = now;
        ApplyLimits(now);
    }

    /// <summary>An answer that is not a 429: the margins shrink a little, and a rate cut for 429s recovers with time.</summary>
    private void Relieve(SentRequest answered, DateTimeOffset now)
    {
        foreach (var limit in _limits)
        {
            if (limit.Bucket is { Margin: > 0 } bucket)
            {
                bucket.Margin = Math.Max(0, bucket.Margin - MarginRelief);
            }
        }

        var requests = Limit(LimitKind.Requests);
        // Only an answer to a request sent after the last cut speaks of the rate as it is now.
        if ((_rateScale < 1 || requests.IsInferred) && answered.At > _lastRateCut)
        {
            // A rate cut for 429s comes back answer by answer (so about one answer in a hundred is a
            // 429 however slow the lane goes): a configured rate up to itself, an inferred one on up until the next 429.
            if (requests.IsInferred)
            {
                requests.Inferred *= 1 + RateRecoveryPerAnswer;
            }
            else
            {
                _rateScale = Math.Min(1, _rateScale * (1 + RateRecoveryPerAnswer));
            }

            ApplyLimits(now);
        }
    }

    /// <summary>Sets each bucket to its limit, less the headroom, at this node's share and the rate 429s allow; makes the buckets of limits newly known.</summary>
    private void ApplyLimits(DateTimeOffset? now)
    {
        foreach (var limit in _limits)
        {
            if (limit.PerMinute is not { } perMinute)
            {
                continue;
            }

            var keep = perMinute * _headroom * _share * _rateScale;
            if (limit.Bucket is null)
            {
                // A new lane knows least about how the provider counts: it starts with a margin, which its answers wear down.
                limit.Bucket = new RateBucket(keep, now ?? DateTimeOffset.MinValue) { Margin = InitialMargin };
            }
            else
            {
                limit.Bucket.SetLimit(keep);
            }
        }
    }
}
