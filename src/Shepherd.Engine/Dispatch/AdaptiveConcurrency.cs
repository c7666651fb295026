namespace Shepherd.Engine.Dispatch;

/// <summary>
/// How many requests a lane keeps in flight, found the way TCP finds its window: one more after
/// every window of successes (or, while a rate limit paces the lane and no overload signal has
/// come yet, after every success: the limit doubles each round trip, so a lane whose answers are
/// slow soon has the width its rate needs, while the rate and not the width keeps it below the
/// provider's limit), and half as many after an overload signal (429, 503, 529, a
/// timeout), at most once per cool-down so one burst of rejections halves only once. Not thread-safe:
/// the dispatcher's loop owns it.
/// </summary>
internal sealed class AdaptiveConcurrency
{
    private readonly int _max;
    private readonly TimeSpan _coolDown;
    private int _successes;
    private bool _slowStart = true;
    private DateTimeOffset _lastDecrease = DateTimeOffset.MinValue;

    public AdaptiveConcurrency(int initial, int max, TimeSpan coolDown)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        _max = max;
        _coolDown = coolDown;
        Limit = Math.Clamp(initial, 1, max);
    }

    /// <summary>The current limit.</summary>
    public int Limit { get; private set; }

    /// <summary>Requests in flight.</summary>
    public int InFlight { get; private set; }

    public bool HasRoom => InFlight < Limit;

    public void Acquire() => InFlight++;

    /// <summary>Ends a request that said nothing about load (a permanent error, a cancelled attempt).</summary>
    public void Release() => InFlight = Math.Max(0, InFlight - 1);

    /// <summary>Ends a request that succeeded; <paramref name="paced"/> when a rate limit paces the lane.</summary>
    public void Succeeded(bool paced)
    {
        Release();
        if ((paced && _slowStart) || ++_successes >= Limit)
        {
            _successes = 0;
            Limit = Math.Min(_max, Limit + 1);
        }
    }

    public void Overloaded(DateTimeOffset now)
    {
        Release();
        _successes = 0;
        _slowStart = false;
        if (now - _lastDecrease >= _coolDown)
        {
            _lastDecrease = now;
            Limit = Math.Max(1, Limit / 2);
        }
    }
}
