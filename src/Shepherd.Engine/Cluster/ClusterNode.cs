using Microsoft.Extensions.Logging;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Cluster;

/// <summary>
/// This process as one node among several on a shared store. It beats (saying it is alive and
/// which lanes it sends on), learns how many other nodes send on each lane so the dispatcher
/// keeps each lane to its share of the limits, holds the leader role that lets one node alone
/// write result files and drive native batches, and passes other nodes' changes on. On a store
/// of one process (SQLite) there is nothing to share: the node leads and does nothing else.
/// </summary>
public sealed partial class ClusterNode
{
    /// <summary>The role of the node that finalizes batches and runs native ones.</summary>
    public const string LeaderRole = "leader";

    private readonly IClusterStore? _cluster;
    private readonly Dispatcher _dispatcher;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private volatile bool _leading;
    private bool _beaten;

    /// <summary>Creates the node over <paramref name="store"/>; it beats once <see cref="RunAsync"/> runs.</summary>
    public ClusterNode(IBatchStore store, Dispatcher dispatcher, TimeProvider timeProvider, ILogger<ClusterNode> logger)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(dispatcher);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        _cluster = store as IClusterStore;
        _dispatcher = dispatcher;
        _time = timeProvider;
        _logger = logger;
        _leading = _cluster is null;
    }

    /// <summary>True while this node holds the leader role; always true on a store of one process.</summary>
    public bool IsLeader => _leading;

    /// <summary>How often the node beats: five times per node timeout, at most once a second.</summary>
    public TimeSpan HeartbeatInterval => _cluster is null ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks(Math.Min(_cluster.NodeTimeout.Ticks / 5, TimeSpan.TicksPerSecond));

    /// <summary>
    /// Raised when another node changed batches, or when this node became the leader: the
    /// finalizer and the native runner look at the store then. Handlers must be quick.
    /// </summary>
    public event Action? Changed;

    /// <summary>Beats until <paramref name="stoppingToken"/> is cancelled; returns at once on a store of one process.</summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        if (_cluster is not { } cluster)
        {
            return;
        }

        cluster.Changed += OnChanged;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await BeatAsync(cluster, stoppingToken);
                try
                {
                    await Task.Delay(HeartbeatInterval, _time, stoppingToken);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    break;
                }
            }
        }
        finally
        {
            cluster.Changed -= OnChanged;
        }
    }

    /// <summary>
    /// Leaves the cluster after the dispatcher stopped: this node's leases go back to the queue
    /// and its roles are free at once, instead of when its heartbeats are missed.
    /// </summary>
    public async Task LeaveAsync(CancellationToken cancellationToken)
    {
        _leading = _cluster is null;
        if (_cluster is { } cluster)
        {
            await cluster.LeaveAsync(cancellationToken);
        }
    }

    /// <summary>One beat: alive, lanes shared, leadership held or taken.</summary>
    internal async Task BeatAsync(IClusterStore cluster, CancellationToken cancellationToken)
    {
        try
        {
            var now = _time.GetUtcNow();
            var view = await cluster.HeartbeatAsync(_dispatcher.SendingLanes, now, cancellationToken);
            if (view.Joined && _beaten)
            {
                // Taken for dead while it was alive: its leases went to others, so what it holds must not be sent.
                LogTakenForDead(cluster.NodeName, cluster.NodeTimeout);
                _dispatcher.DropLeases();
            }

            _beaten = true;
            // Two beats: every node that started on a lane with this one has said so by then.
            _dispatcher.ShareLanes(view, 2 * HeartbeatInterval);
            var leading = await cluster.HoldRoleAsync(LeaderRole, now, cancellationToken);
            if (leading != _leading)
            {
                _leading = leading;
                LogLeadership(cluster.NodeName, leading ? "leads" : "no longer leads");
                if (leading)
                {
                    Changed?.Invoke();
                }
            }
        }
        catch (StoreException ex)
        {
            // The database may be back by the next beat; meanwhile this node leads nothing, since
            // another may have taken over.
            _leading = false;
            LogBeatFailed(ex);
        }
    }

    private void OnChanged()
    {
        _dispatcher.NotifyBatchesChanged();
        Changed?.Invoke();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {Node} {What} the cluster: it writes result files and runs native batches")]
    private partial void LogLeadership(string node, string what);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {Node} was silent for longer than {Timeout} and the others took over its work; it drops what it held and goes on")]
    private partial void LogTakenForDead(string node, TimeSpan timeout);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The node could not beat; it tries again shortly")]
    private partial void LogBeatFailed(Exception exception);
}
