namespace Shepherd.Engine.Dispatch;

/// <summary>
/// A smooth rate limit: a per-minute limit drains at limit/60 per second and holds at most one
/// second's worth, so nothing bursts past a provider that enforces its limit per second. A
/// request larger than a second's worth goes alone into an empty bucket and leaves a debt that
/// drains before the next. Not thread-safe: its owner (the
/// dispatcher's loop, the server's per-key limits) serializes its calls.
/// </summary>
public sealed class RateBucket
{
    private double _perSecond;
    private double _level;
    private DateTimeOffset _drainedAt;

    /// <summary>An empty bucket for <paramref name="perMinute"/>, draining from <paramref name="now"/>.</summary>
    public RateBucket(double perMinute, DateTimeOffset now)
    {
        SetLimit(perMinute);
        _drainedAt = now;
    }

    /// <summary>
    /// The share of the one second's worth held back (0 to below 1): the bucket is full that much
    /// sooner. It costs nothing in rate, which is the drain, and absorbs the difference between
    /// this bucket and the provider's own picture of it.
    /// </summary>
    public double Margin { get; set; }

    /// <summary>The limit per minute.</summary>
    public double PerMinute => _perSecond * 60;

    /// <summary>What the bucket holds now, in the limit's units; one second's worth is full.</summary>
    public double Level(DateTimeOffset now)
    {
        Drain(now);
        return _level;
    }

    /// <summary>Changes the limit per minute; what the bucket holds stays.</summary>
    public void SetLimit(double perMinute)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(perMinute, 0);
        _perSecond = perMinute / 60;
    }

    /// <summary>How long until <paramref name="cost"/> fits; zero when it fits now.</summary>
    public TimeSpan WaitFor(double cost, DateTimeOffset now)
    {
        Drain(now);
        var capacity = _perSecond * (1 - Margin);
        if (_level <= 0 || _level + cost <= capacity)
        {
            return TimeSpan.Zero;
        }

        // Until enough has drained for the cost to fit, or, for a cost over what the bucket holds, until empty.
        var excess = Math.Min(_level + cost - capacity, _level);
        return TimeSpan.FromSeconds(excess / _perSecond);
    }

    /// <summary>Takes the bucket as full now: the provider said so with a 429.</summary>
    public void Fill(DateTimeOffset now)
    {
        Drain(now);
        _level = Math.Max(_level, _perSecond * (1 - Margin));
    }

    /// <summary>Adds <paramref name="amount"/> (negative to give back).</summary>
    public void Add(double amount, DateTimeOffset now)
    {
        Drain(now);
        _level = Math.Max(0, _level + amount);
    }

    /// <summary>
    /// Takes the provider's word for how full it is: at <paramref name="observedAt"/> it held
    /// <paramref name="level"/>. The bucket is rebuilt from that moment, replaying what was sent
    /// since (<paramref name="sentSince"/>, in time order), so the provider's count replaces the
    /// local estimate wherever the two differ.
    /// </summary>
    public void Sync(double level, DateTimeOffset observedAt, IEnumerable<(DateTimeOffset At, double Cost)> sentSince, DateTimeOffset now)
    {
        _level = level;
        _drainedAt = observedAt;
        foreach (var (at, cost) in sentSince)
        {
            Add(cost, at);
        }

        Drain(now);
    }

    private void Drain(DateTimeOffset now)
    {
        var elapsed = (now - _drainedAt).TotalSeconds;
        if (elapsed > 0)
        {
            _level = Math.Max(0, _level - (elapsed * _perSecond));
            _drainedAt = now;
        }
    }
}
