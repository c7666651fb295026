using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Server.Gateway;

/// <summary>
/// What each tenant's realtime calls cost, kept in the store by day (UTC) so a restart and the
/// other nodes of a cluster see it, and the daily budgets held against it. Once a second the
/// calls this node answered since its last write are added to the store, and the day's totals
/// (every node's) read back. A call of a tenant with a budget holds what it may cost while it
/// runs; one that could take the day past the budget is refused.
/// </summary>
internal sealed partial class RealtimeLedger(IBatchStore store, Dispatcher dispatcher, TimeProvider time, ILogger<RealtimeLedger> logger) : BackgroundService
{
    /// <summary>How often what this node spent is written, and the day's totals read.</summary>
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, (long Calls, long CostNanos)> _written = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _held = new(StringComparer.Ordinal);
    private Dictionary<string, long> _stored = new(StringComparer.Ordinal);

    /// <summary>
    /// Holds <paramref name="mostNanos"/> of <paramref name="owner"/>'s day when it fits under
    /// <paramref name="budgetNanos"/> beside what the day has spent and what calls in flight
    /// hold; returns what was spent when it does not (and holds nothing).
    /// </summary>
    public long? TryHold(string owner, long budgetNanos, long mostNanos)
    {
        lock (_lock)
        {
            var spent = SpentLocked(owner);
            var held = _held.GetValueOrDefault(owner);
            if (spent + held + mostNanos > budgetNanos)
            {
                return spent;
            }

            _held[owner] = held + mostNanos;
            return null;
        }
    }

    /// <summary>Gives back what a call held, once it has ended (its cost is counted by then).</summary>
    public void Release(string owner, long mostNanos)
    {
        lock (_lock)
        {
            _held[owner] = _held.GetValueOrDefault(owner) - mostNanos;
        }
    }

    /// <summary>What <paramref name="owner"/>'s realtime calls cost today, every node's, in billionths of a US dollar.</summary>
    public long SpentToday(string owner)
    {
        lock (_lock)
        {
            return SpentLocked(owner);
        }
    }

    /// <summary>The day's total as last read from the store, with what this node spent since it last wrote.</summary>
    private long SpentLocked(string owner)
    {
        var now = dispatcher.RealtimeCost.GetValueOrDefault(owner);
        return _stored.GetValueOrDefault(owner) + (now.CostNanos - _written.GetValueOrDefault(owner).CostNanos);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        try
        {
            do
            {
                await WriteAsync(stoppingToken);
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            // What was spent since the last write is written on the way out.
            await WriteAsync(CancellationToken.None);
        }
    }

    /// <summary>Adds what this node spent since its last write to the store, and reads the day's totals back.</summary>
    internal async Task WriteAsync(CancellationToken cancellationToken)
    {
        try
        {
            var today = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
            var spends = new List<TenantSpend>();
            foreach (var (owner, now) in dispatcher.RealtimeCost)
            {
                var written = _written.GetValueOrDefault(owner);
                if (now.Calls > written.Calls)
                {
                    spends.Add(new TenantSpend(owner, today, now.Calls - written.Calls, now.CostNanos - written.CostNanos));
                }
            }

            if (spends.Count > 0)
            {
                await store.AddSpendAsync(spends, cancellationToken);
            }

            var stored = (await store.ListSpendAsync(today, cancellationToken)).ToDictionary(s => s.Owner, s => s.CostNanos, StringComparer.Ordinal);
            lock (_lock)
            {
                foreach (var spend in spends)
                {
                    var written = _written.GetValueOrDefault(spend.Owner);
                    _written[spend.Owner] = (written.Calls + spend.Calls, written.CostNanos + spend.CostNanos);
                }

                // A new day starts from what the store holds for it.
                _stored = stored;
            }
        }
        catch (StoreException ex)
        {
            // Kept in memory and written at the next try: the counts only grow.
            LogWriteFailed(ex);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The realtime ledger could not be written; it is tried again in a second")]
    private partial void LogWriteFailed(Exception exception);
}
