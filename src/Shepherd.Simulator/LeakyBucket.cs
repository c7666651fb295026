namespace Shepherd.Simulator;

/// <summary>
/// A limit enforced the way providers quantize theirs: a per-minute limit becomes a bucket that
/// drains at limit/60 per second and holds at most <c>capacitySeconds</c> of it (one second's
/// worth, as OpenAI documents, or a whole minute's, which allows a burst). A single request
/// larger than the capacity is admitted only into an empty bucket, and the debt it leaves
/// drains before the next one.
/// </summary>
internal sealed class LeakyBucket(double perMinute, double capacitySeconds)
{
    private double _level;
    private DateTimeOffset _drainedAt;

    public double PerMinute { get; private set; } = perMinute;

    private double PerSecond => PerMinute / 60;

    private double Capacity => PerSecond * capacitySeconds;

    /// <summary>A new limit from now on (what the bucket holds stays).</summary>
    public void SetLimit(double perMinute, DateTimeOffset now)
    {
        Drain(now);
        PerMinute = perMinute;
    }

    /// <summary>How long until <paramref name="cost"/> fits; zero when it fits now.</summary>
    public TimeSpan WaitFor(double cost, DateTimeOffset now)
    {
        Drain(now);
        if (_level <= 0 || _level + cost <= Capacity)
        {
            return TimeSpan.Zero;
        }

        var excess = _level + cost - Capacity;
        return TimeSpan.FromSeconds(Math.Min(excess, _level) / PerSecond);
    }

    /// <summary>Adds <paramref name="cost"/>; a negative cost gives back what was charged beyond the real count.</summary>
    public void Add(double cost, DateTimeOffset now)
    {
        Drain(now);
        _level = Math.Max(0, _level + cost);
    }

    /// <summary>What is left, in the units providers report: the per-minute limit less what the bucket holds, scaled to a minute.</summary>
    public long Remaining(DateTimeOffset now)
    {
        Drain(now);
        return Math.Max(0, (long)Math.Floor((Capacity - _level) * (60 / capacitySeconds)));
    }

    /// <summary>How long until the bucket is empty again.</summary>
    public TimeSpan ResetIn(DateTimeOffset now)
    {
        Drain(now);
        return TimeSpan.FromSeconds(Math.Max(0, _level) / PerSecond);
    }

    private void Drain(DateTimeOffset now)
    {
        if (_drainedAt != default)
        {
            var elapsed = (now - _drainedAt).TotalSeconds;
            if (elapsed > 0)
            {
                _level = Math.Max(0, _level - (elapsed * PerSecond));
            }
        }

        if (now > _drainedAt)
        {
            _drainedAt = now;
        }
    }
}
