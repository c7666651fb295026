namespace Shepherd.Engine.Dispatch;

/// <summary>What a limit of a provider counts.</summary>
internal enum LimitKind
{
    /// <summary>Requests.</summary>
    Requests,

    /// <summary>Tokens as one: the prompt and the output allowance.</summary>
    Tokens,

    /// <summary>Input tokens apart, as Anthropic has them: the prompt.</summary>
    InputTokens,

    /// <summary>Output tokens apart, as Anthropic has them: the output allowance, given back down to the real output when answered.</summary>
    OutputTokens,
}

/// <summary>
/// One limit of a lane: what the configuration sets, what the provider's headers announce (the
/// lower wins: a provider that lowers its limit is followed even under a configured one), a rate
/// inferred from 429s when neither says anything, and the bucket of what was spent. one second's worth that grows with every 429 and
/// shrinks while none come: it absorbs the difference between the lane's picture of the
/// provider's bucket and the provider's own, at no cost in rate.
/// </summary>
internal sealed class LaneLimit(LimitKind kind, double? configured)
{
    public LimitKind Kind { get; } = kind;

    /// <summary>Per minute, as configured; null when not.</summary>
    public double? Configured { get; } = configured;

    /// <summary>Per minute, as the provider's last header said; null while it has said nothing.</summary>
    public double? Announced { get; private set; }

    /// <summary>The request whose answer announced <see cref="Announced"/>: answers to requests sent before it speak of an older limit.</summary>
    private long _announcedBy;

    /// <summary>Takes the limit an answer to request <paramref name="sequence"/> announced; true when it changed.</summary>
    public bool Announce(double perMinute, long sequence)
    {
        if (sequence < _announcedBy || perMinute == Announced)
        {
            return false;
        }

        _announcedBy = sequence;
        Announced = perMinute;
        return true;
    }

    /// <summary>Per minute, as inferred from the rate at which 429s began; null unless nothing else sets the limit.</summary>
    public double? Inferred { get; set; }

    /// <summary>True when the limit in force is the inferred one: neither the configuration nor the provider set one.</summary>
    public bool IsInferred => Configured is null && Announced is null && Inferred is not null;

    /// <summary>The limit per minute before headroom and shares: the lower of the configured and the announced, else the inferred.</summary>
    public double? PerMinute => (Configured, Announced) switch
    {
        ({ } c, { } a) => Math.Min(c, a),
        ({ } c, null) => c,
        (null, { } a) => a,
        _ => Inferred,
    };

    public RateBucket? Bucket { get; set; }

    /// <summary>True once the provider has said how full it is: the bucket follows the provider's count.</summary>
    public bool Observed { get; set; }

    /// <summary>What <paramref name="sent"/> costs against this limit.</summary>
    public double CostOf(SentRequest sent) => Kind switch
    {
        LimitKind.Requests => 1,
        LimitKind.Tokens => sent.Tokens,
        LimitKind.InputTokens => sent.Tokens - sent.OutputTokens,
        _ => sent.OutputTokens,
    };
}
