namespace Shepherd.Simulator;

/// <summary>
/// A limit enforced the way providers quantize theirs: a per-minute limit becomes a bucket that
/// drains at limit/60 per second and holds at most one second's worth, so nothing bursts past
/// the per-second rate. A single request larger than a second's worth is admitted only into an
/// empty bucket, and the debt it leaves drains before the next one.
/// </summary>
internal sealed class LeakyBucket(long perMinute)
{
    private readonly double _perSecond = perMinute / 60.0;
    private double _level;
    private DateTimeOffset _drainedAt;

    public long PerMinute { get; } = perMinute;

    private double Capacity => _perSecond;

    /// <summary>How long until <paramref name="cost"/> fits; zero when it fits now.</summary>
    public TimeSpan WaitFor(double cost, DateTimeOffset now)
    {
        Drain(now);
        if (_level <= 0 || _level + cost <= Capacity)
        {
            return TimeSpan.Zero;
        }

        var excess = _level + cost - Capacity;
        return TimeSpan.FromSeconds(Math.Min(excess, _level) / _perSecond);
    }

    public void Add(double cost) => _level += cost;

    /// <summary>What is left of the per-minute limit, in the units providers report.</summary>
    public long Remaining => Math.Max(0, (long)Math.Floor(PerMinute - (_level * 60)));

    /// <summary>How long until the bucket is empty again.</summary>
    public TimeSpan ResetIn => TimeSpan.FromSeconds(Math.Max(0, _level) / _perSecond);

    private void Drain(DateTimeOffset now)
    {
        if (_drainedAt != default)
        {
            var elapsed = (now - _drainedAt).TotalSeconds;
            if (elapsed > 0)
            {
                _level = Math.Max(0, _level - (elapsed * _perSecond));
            }
        }

        _drainedAt = now;
    }
}
