using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// The totals of a counter, one per set of label values, kept here and read by an observable
/// counter whenever metrics are collected. A series is exported from the moment it is started,
/// at 0, however late a listener comes: a plain counter drops what is added before one listens.
/// </summary>
internal sealed class CountedSeries
{
    private readonly string[] _labels;
    private readonly ConcurrentDictionary<string, Series> _series = new(StringComparer.Ordinal);

    /// <summary>A counter whose series are told apart by <paramref name="labels"/>.</summary>
    public CountedSeries(params string[] labels) => _labels = labels;

    /// <summary>Adds <paramref name="amount"/> to the series of <paramref name="values"/> (one per label, in order).</summary>
    public void Add(long amount, params string[] values)
    {
        var series = _series.GetOrAdd(string.Join('\u001f', values), static (_, state) => new Series(state.Labels.Zip(state.Values, (l, v) => new KeyValuePair<string, object?>(l, v)).ToArray()), (Labels: _labels, Values: values));
        Interlocked.Add(ref series.Total, amount);
    }

    /// <summary>Exports a series at 0 with only <paramref name="labels"/>: those known before anything is counted.</summary>
    public void Start(params (string Label, string Value)[] labels) =>
        _series.TryAdd("\u001e" + string.Join('\u001f', labels.Select(l => $"{l.Label}={l.Value}")), new Series([.. labels.Select(l => new KeyValuePair<string, object?>(l.Label, l.Value))]));

    /// <summary>Every series, its total turned into the instrument's value by <paramref name="value"/>.</summary>
    public IEnumerable<Measurement<T>> Read<T>(Func<long, T> value)
        where T : struct =>
        _series.Values.Select(s => new Measurement<T>(value(Interlocked.Read(ref s.Total)), s.Tags));

    private sealed class Series(KeyValuePair<string, object?>[] tags)
    {
        public long Total;

        public KeyValuePair<string, object?>[] Tags { get; } = tags;
    }
}
