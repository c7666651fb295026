using System.Threading.Channels;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// What a dispatcher and its loop tell each other across threads: the loop's events, whether
/// batches changed, how many outcomes wait for the store, whether claims are out or the loop is
/// parked, and what the loop last saw (lanes, queue depth) for readers on other threads. It
/// outlives each run, so what a run saw stays readable after it stops.
/// </summary>
internal sealed class DispatchSignals
{
    private readonly Channel<DispatchEvent> _events = Channel.CreateUnbounded<DispatchEvent>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Lock _clusterLock = new();
    private int _batchesChanged = 1;
    private int _parked;  // the ticket of the wait the loop is parked in; zero while it works
    private int _claimsInFlight;
    private long _uncommitted;
    private long _queueDepth;
    private IReadOnlyCollection<string> _sendingLanes = [];
    private IReadOnlyList<LaneState> _lanes = [];
    private (ClusterView View, TimeSpan Settle) _cluster = (ClusterView.Alone, TimeSpan.Zero);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long Calls, long CostNanos)> _realtimeCost = new(StringComparer.Ordinal);

    /// <summary>Attempts of realtime calls and what they cost, in billionths of a US dollar, by tenant ("" on a server without keys).</summary>
    public IReadOnlyDictionary<string, (long Calls, long CostNanos)> RealtimeCost => _realtimeCost;

    /// <summary>Counts an attempt of a realtime call of <paramref name="owner"/> and what it cost.</summary>
    public void Spent(string? owner, long nanos) =>
        _realtimeCost.AddOrUpdate(owner ?? "", (1, nanos), (_, total) => (total.Calls + 1, total.CostNanos + nanos));

    /// <summary>What the loop is told: answers, claims' results, and "look again".</summary>
    public ChannelReader<DispatchEvent> Events => _events.Reader;

    /// <summary>Tells the loop something; never blocks (the channel is unbounded).</summary>
    public void Tell(DispatchEvent next) => _events.Writer.TryWrite(next);

    /// <summary>Batches changed (new, cancelled, ended): the loop looks at the store again on its next turn.</summary>
    public void BatchesChanged() => Volatile.Write(ref _batchesChanged, 1);

    /// <summary>True once after batches changed.</summary>
    public bool TakeBatchesChanged() => Interlocked.Exchange(ref _batchesChanged, 0) == 1;

    /// <summary>Outcomes emitted and not yet committed.</summary>
    public long Uncommitted => Interlocked.Read(ref _uncommitted);

    /// <summary>Counts an outcome on its way to the store.</summary>
    public void Emitted() => Interlocked.Increment(ref _uncommitted);

    /// <summary>Counts <paramref name="count"/> outcomes as in the store.</summary>
    public void Committed(int count) => Interlocked.Add(ref _uncommitted, -count);

    /// <summary>
    /// Forgets outcomes a failed earlier run could not record: they are gone with its channel
    /// (their items stay leased and are released before a new run), so they no longer wait for this run's store.
    /// </summary>
    public void ForgetUncommitted() => Interlocked.Exchange(ref _uncommitted, 0);

    /// <summary>Claims sent to the store whose result has not reached the loop.</summary>
    public int ClaimsInFlight => Volatile.Read(ref _claimsInFlight);

    /// <summary>Counts a claim sent.</summary>
    public void ClaimStarted() => Interlocked.Increment(ref _claimsInFlight);

    /// <summary>Counts a claim's result as reached the loop.</summary>
    public void ClaimEnded() => Interlocked.Decrement(ref _claimsInFlight);

    /// <summary>The loop is parked in its wait <paramref name="ticket"/>.</summary>
    public void Park(int ticket) => Volatile.Write(ref _parked, ticket);

    /// <summary>Unparks the loop if it is still parked in wait <paramref name="ticket"/> (a late wake from an earlier wait must not).</summary>
    public void Unpark(int ticket) => Interlocked.CompareExchange(ref _parked, 0, ticket);

    /// <summary>True while the loop waits on a timer.</summary>
    public bool IsParked => Volatile.Read(ref _parked) != 0;

    /// <summary>Items of active batches not yet ended, as of the loop's last look at the store.</summary>
    public long QueueDepth
    {
        get => Interlocked.Read(ref _queueDepth);
        set => Interlocked.Exchange(ref _queueDepth, value);
    }

    /// <summary>The lanes this node has work for, by <see cref="Lane.Key"/>, as of the loop's last look.</summary>
    public IReadOnlyCollection<string> SendingLanes
    {
        get => Volatile.Read(ref _sendingLanes);
        set => Volatile.Write(ref _sendingLanes, value);
    }

    /// <summary>Every lane as the loop last published it.</summary>
    public IReadOnlyList<LaneState> Lanes
    {
        get => Volatile.Read(ref _lanes);
        set => Volatile.Write(ref _lanes, value);
    }

    /// <summary>What the node's last heartbeat saw, and how long a lane must have sent to count as settled.</summary>
    public (ClusterView View, TimeSpan Settle) Cluster
    {
        get
        {
            lock (_clusterLock)
            {
                return _cluster;
            }
        }

        set
        {
            lock (_clusterLock)
            {
                _cluster = value;
            }
        }
    }
}
