namespace Shepherd.Engine.Dispatch;

/// <summary>
/// Provider tokens per locally counted prompt token, learned from the levels a lane's provider
/// tells in its rate-limit headers: a provider that counts characters where the tokenizer counts
/// tokens is matched after a few answers. It reads the lane's <see cref="SendHistory"/> and keeps
/// only what the learning needs. Not thread-safe: the lane's owner, the dispatch loop, owns it.
/// </summary>
internal sealed class PromptCostLearner(SendHistory sends)
{
    private const double CostFactorWeight = 0.2;
    private const int ObservedLevelsKept = 512;

    /// <summary>
    /// The provider's count is compared over this many requests at a time: requests sent at
    /// nearly the same moment may reach it in another order, and over a run of them the few that
    /// swap places at either end matter little.
    /// </summary>
    private const int CostWindow = 8;
    private const double MinCostFactor = 0.25;
    private const double MaxCostFactor = 4;

    /// <summary>How far apart two requests must go for the provider to see them in the order they went.</summary>
    private static readonly TimeSpan Apart = TimeSpan.FromMilliseconds(5);

    private readonly SendHistory _sends = sends;
    private readonly SortedDictionary<long, (DateTimeOffset At, double Level)> _observed = [];
    private readonly SortedSet<long> _sampledWindows = [];
    private double _costFactor = 1;
    private double _costFactorVariance;
    private int _costSamples;

    /// <summary>The learned mean plus one deviation, to err on the safe side; 1 until the provider has told enough.</summary>
    public double Factor => _costFactor + Math.Sqrt(_costFactorVariance);

    /// <summary>
    /// Records the level the provider told in its answer to <paramref name="reservation"/>. Windows of <see cref="CostWindow"/> requests, by sequence: the rise of the provider's
    /// level from right after the last request of the window before to right after the last
    /// request of this one, plus what drained meanwhile, is what it counted the window's admitted
    /// requests as. A window is read once all of its requests are answered;
    /// answers arrive in any order, so every answer looks at the windows it may complete.
    /// </summary>
    public void Observe(SentRequest reservation, double level, double perSecond, bool countsOutput)
    {
        _observed[reservation.Sequence] = (reservation.At, level);
        while (_observed.Count > ObservedLevelsKept)
        {
            _observed.Remove(_observed.Keys.First());
        }

        LearnFromWindowOf(reservation.Sequence, perSecond, countsOutput);
    }

    /// <summary>Reads the windows that the answer to request <paramref name="sequence"/> may complete.</summary>
    public void LearnFromWindowOf(long sequence, double perSecond, bool countsOutput)
    {
        var window = (sequence - 1) / CostWindow;
        Sample(window, perSecond, countsOutput);
        if (sequence % CostWindow == 0)
        {
            Sample(window + 1, perSecond, countsOutput);
        }
    }

    private void Sample(long window, double perSecond, bool countsOutput)
    {
        var from = window * CostWindow;
        var to = from + CostWindow;
        if (_sampledWindows.Contains(window) || !_observed.TryGetValue(from, out var start) || !_observed.TryGetValue(to, out var end)
            || !StandsApart(from) || !StandsApart(to))
        {
            return;
        }

        var admitted = new List<SentRequest>(CostWindow);
        for (var sequence = from + 1; sequence <= to; sequence++)
        {
            // Every request in between must be answered: the provider counted those it admitted, and only those.
            if (!_sends.TryGet(sequence, out var sent) || sent.Admitted is null)
            {
                return;
            }

            if (sent.Admitted == true)
            {
                admitted.Add(sent);
            }
        }

        _sampledWindows.Add(window);
        while (_sampledWindows.Count > ObservedLevelsKept)
        {
            _sampledWindows.Remove(_sampledWindows.Min);
        }

        if (admitted.Sum(s => s.PromptTokens) <= 0)
        {
            return;
        }

        // The factor at which the provider's bucket, replayed from its level at the start through
        // the window's admitted requests (draining between them, never below empty), ends at the
        // level it said at the end. The replay grows with the factor, so halving the interval finds it.
        double EndLevel(double factor)
        {
            var (level, at) = (start.Level, start.At);
            foreach (var sent in admitted)
            {
                level = Math.Max(0, level - (perSecond * (sent.At - at).TotalSeconds)) + (factor * sent.PromptTokens) + (countsOutput ? sent.OutputTokens : 0);
                at = sent.At;
            }

            return level;
        }

        var (low, high) = (MinCostFactor, MaxCostFactor);
        if (EndLevel(low) >= end.Level || EndLevel(high) <= end.Level)
        {
            // Outside what any plausible count explains (another client on the key, a reset): not a sample.
            return;
        }

        for (var step = 0; step < 24; step++)
        {
            var middle = (low + high) / 2;
            (low, high) = EndLevel(middle) < end.Level ? (middle, high) : (low, middle);
        }

        var factor = (low + high) / 2;
        // The mean plus one deviation: a little over the provider's count costs a little speed,
        // a little under costs 429s. Both move as a weighted average of the samples.
        // The first samples weigh as a plain average, so the lane learns quickly where it starts.
        var weight = Math.Max(CostFactorWeight, 1.0 / ++_costSamples);
        var deviation = factor - _costFactor;
        _costFactor += weight * deviation;
        _costFactorVariance = (1 - weight) * (_costFactorVariance + (weight * deviation * deviation));
    }

    /// <summary>
    /// True when request <paramref name="sequence"/> went apart from the requests before and after
    /// it: requests sent together may reach the provider in any order, and the level it said after
    /// one of them would then hold others, or miss them.
    /// </summary>
    private bool StandsApart(long sequence) =>
        _sends.TryGet(sequence, out var sent)
        && (!_sends.TryGet(sequence - 1, out var before) || sent.At - before.At >= Apart)
        && (!_sends.TryGet(sequence + 1, out var after) || after.At - sent.At >= Apart);
}
