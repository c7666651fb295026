using System.Runtime.InteropServices;
using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Storage;

/// <summary>
/// What a commit does, decided in one place for both stores: each outcome sorted by what it does
/// to its item, the state and error it leaves there, and what the outcomes that took effect add
/// to their batches. The stores only write it (PostgreSQL one statement per set, SQLite one per
/// item); whether an outcome took effect (its lease was still held) only their statements learn,
/// and they say so with <see cref="Count"/>.
/// </summary>
internal sealed class CommitPlan
{
    private readonly Dictionary<string, BatchDelta> _counts = new(StringComparer.Ordinal);
    private readonly Func<string, bool> _isCancelling;
    private Dictionary<string, bool>? _cancelling;

    private CommitPlan(Func<string, bool> isCancelling) => _isCancelling = isCancelling;

    /// <summary>Handed back unsent: queued again, the attempt not counted.</summary>
    public OutcomeSet Released { get; } = new();

    /// <summary>Never sent, and ending: cancelled or expired.</summary>
    public OutcomeSet Unsent { get; } = new();

    /// <summary>Failed for a passing reason: queued again for a later attempt.</summary>
    public OutcomeSet Retried { get; } = new();

    /// <summary>Answered for good: succeeded or failed, with a result.</summary>
    public OutcomeSet Ended { get; } = new();

    /// <summary>
    /// What the outcomes counted add to each batch, in the order of the batches' ids: each batch
    /// takes its counts, then may end. One order, so that two PostgreSQL commits that lock the
    /// same batches' rows never wait on each other in a ring.
    /// </summary>
    public IEnumerable<KeyValuePair<string, BatchDelta>> Counts => _counts.OrderBy(count => count.Key, StringComparer.Ordinal);

    /// <summary>
    /// Sorts <paramref name="outcomes"/>, keeping their order within each set. An item handed back
    /// by a batch that is being cancelled ends cancelled, since nothing more of that batch is sent;
    /// <paramref name="isCancelling"/> is asked that only for the batches of items handed back, once each.
    /// </summary>
    public static CommitPlan Of(IReadOnlyList<ItemOutcome> outcomes, Func<string, bool> isCancelling)
    {
        var plan = new CommitPlan(isCancelling);
        foreach (var outcome in outcomes)
        {
            switch (outcome.Kind)
            {
                case OutcomeKind.Released when plan.IsCancelling(outcome.Item.BatchId):
                    plan.Unsent.Add(outcome with { Kind = OutcomeKind.Cancelled });
                    break;
                case OutcomeKind.Released:
                    plan.Released.Add(outcome);
                    break;
                case OutcomeKind.Cancelled or OutcomeKind.Expired:
                    plan.Unsent.Add(outcome);
                    break;
                case OutcomeKind.Retry:
                    plan.Retried.Add(outcome);
                    break;
                default:
                    plan.Ended.Add(outcome);
                    break;
            }
        }

        return plan;
    }

    /// <summary>The state an outcome of <see cref="Unsent"/> or <see cref="Ended"/> leaves its item in.</summary>
    public static ItemState EndState(OutcomeKind kind) => kind switch
    {
        OutcomeKind.Succeeded => ItemState.Succeeded,
        OutcomeKind.Cancelled => ItemState.Cancelled,
        OutcomeKind.Expired => ItemState.Expired,
        _ => ItemState.Failed,
    };

    /// <summary>
    /// The cost a result row keeps: what the answer cost, or for one from the cache (which costs
    /// nothing) what it would have cost, as it reads back what it saved.
    /// </summary>
    public static long StoredCost(AttemptResult result) => result.Cached ? result.SavedNanos : result.CostNanos;

    /// <summary>The last error an outcome leaves on its item: none for a success, else what went wrong (never a body).</summary>
    public static string? ErrorOf(ItemOutcome outcome) => outcome.Kind == OutcomeKind.Succeeded ? null : outcome.Result.Describe();

    /// <summary>1 for an outcome of <see cref="Retried"/> that asks again because its answer did not fit, else 0: what it adds to its item's re-asks.</summary>
    public static int Reasked(ItemOutcome outcome) => outcome.Result.Fits == false ? 1 : 0;

    /// <summary>Counts, in its batch, an outcome that took effect (its lease was still held): one that ended, or an answer that did not fit and is asked again.</summary>
    public void Count(ItemOutcome outcome)
    {
        ref var delta = ref CollectionsMarshal.GetValueRefOrAddDefault(_counts, outcome.Item.BatchId, out _);
        switch (outcome.Kind)
        {
            case OutcomeKind.Cancelled or OutcomeKind.Expired:
                delta.AddUnsent(outcome.Kind);
                break;
            case OutcomeKind.Retry:
                delta.AddReasked(outcome.Result, outcome.Item.Tier);
                break;
            default:
                delta.Add(outcome.Kind == OutcomeKind.Succeeded, outcome.Result, outcome.Item);
                break;
        }
    }

    private bool IsCancelling(string batchId)
    {
        _cancelling ??= new Dictionary<string, bool>(StringComparer.Ordinal);
        ref var cancelling = ref CollectionsMarshal.GetValueRefOrAddDefault(_cancelling, batchId, out var known);
        if (!known)
        {
            cancelling = _isCancelling(batchId);
        }

        return cancelling;
    }
}

/// <summary>Outcomes of one kind, in the order they came, and as the arrays a set-based statement takes.</summary>
internal sealed class OutcomeSet
{
    private Dictionary<long, ItemOutcome>? _byId;

    /// <summary>The outcomes, in the order they came.</summary>
    public List<ItemOutcome> Outcomes { get; } = [];

    /// <summary>Each outcome by its item's id (the last one, should an item come twice).</summary>
    public IReadOnlyDictionary<long, ItemOutcome> ById => _byId ??= Index(Outcomes);

    /// <summary>Adds <paramref name="outcome"/> at the end.</summary>
    public void Add(ItemOutcome outcome)
    {
        Outcomes.Add(outcome);
        _byId = null;
    }

    /// <summary>The items' ids.</summary>
    public long[] Ids() => [.. Outcomes.Select(o => o.Item.ItemId)];

    /// <summary>The leases the outcomes were decided under.</summary>
    public long[] Leases() => [.. Outcomes.Select(o => o.Item.Lease)];

    /// <summary>The states the outcomes leave their items in, as stored.</summary>
    public int[] States() => [.. Outcomes.Select(o => (int)CommitPlan.EndState(o.Kind))];

    /// <summary>The last errors the outcomes leave on their items.</summary>
    public string?[] Errors() => [.. Outcomes.Select(CommitPlan.ErrorOf)];

    private static Dictionary<long, ItemOutcome> Index(List<ItemOutcome> outcomes)
    {
        var byId = new Dictionary<long, ItemOutcome>(outcomes.Count);
        foreach (var outcome in outcomes)
        {
            byId[outcome.Item.ItemId] = outcome;
        }

        return byId;
    }
}

/// <summary>What the outcomes of one commit, or the items ended by one stop, add to a batch's counts.</summary>
internal struct BatchDelta
{
    public long Succeeded;
    public long Failed;
    public long Cancelled;
    public long Expired;
    public long InputTokens;
    public long OutputTokens;
    public long CostNanos;
    public long Unpriced;
    public long BudgetExceeded;
    public long NativeSucceeded;
    public long NativeCostNanos;
    public long FlexSucceeded;
    public long FlexCostNanos;
    public long SavedNanos;
    public long Cached;
    public long CacheSavedNanos;
    public long ValidFirst;
    public long ValidReasked;
    public long InvalidOutput;
    public long Reasked;
    public long ReaskCostNanos;

    /// <summary>Counts an item that ended without being sent: cancelled, or else expired.</summary>
    public void AddUnsent(OutcomeKind kind)
    {
        if (kind == OutcomeKind.Cancelled)
        {
            Cancelled++;
        }
        else
        {
            Expired++;
        }
    }

    /// <summary>
    /// Counts an answer that did not fit and is asked again: it was paid for, so its tokens and
    /// cost are the batch's (and its tier's), and apart, what such thrown-away answers cost. A
    /// retry of any other kind adds nothing: it had no answer.
    /// </summary>
    public void AddReasked(AttemptResult result, ItemTier tier)
    {
        if (result.Fits != false)
        {
            return;
        }

        Reasked++;
        ReaskCostNanos += result.CostNanos;
        InputTokens += result.InputTokens;
        OutputTokens += result.OutputTokens;
        CostNanos += result.CostNanos;
        NativeCostNanos += tier == ItemTier.Native ? result.CostNanos : 0;
        FlexCostNanos += tier == ItemTier.Flex ? result.CostNanos : 0;
        Unpriced += result.Priced ? 0 : 1;
    }

    /// <summary>Counts an answered item with what its answer used and cost, the tier that answered it, and how its check came out.</summary>
    public void Add(bool succeeded, AttemptResult result, ClaimedItem item)
    {
        var tier = item.Tier;
        ValidFirst += result.Fits == true && item.Reasks == 0 ? 1 : 0;
        ValidReasked += result.Fits == true && item.Reasks > 0 ? 1 : 0;
        InvalidOutput += !succeeded && result.ErrorCode == FailureCodes.InvalidOutput ? 1 : 0;
        if (succeeded && result.Cached)
        {
            // Answered from the cache: no tier answered it, and what it saved is the cache's.
            Succeeded++;
            Cached++;
            CacheSavedNanos += result.SavedNanos;
        }
        else if (succeeded)
        {
            Succeeded++;
            NativeSucceeded += tier == ItemTier.Native ? 1 : 0;
            NativeCostNanos += tier == ItemTier.Native ? result.CostNanos : 0;
            FlexSucceeded += tier == ItemTier.Flex ? 1 : 0;
            FlexCostNanos += tier == ItemTier.Flex ? result.CostNanos : 0;
            SavedNanos += result.SavedNanos;
        }
        else
        {
            Failed++;
        }

        InputTokens += result.InputTokens;
        OutputTokens += result.OutputTokens;
        CostNanos += result.CostNanos;
        Unpriced += result.Priced ? 0 : 1;
        BudgetExceeded += result.ErrorCode == FailureCodes.BudgetExceeded ? 1 : 0;
    }

    /// <summary>The parameters of <see cref="StoreSql.AddCounts"/> for <paramref name="batchId"/>, their names after <paramref name="prefix"/>.</summary>
    public readonly (string Name, object? Value)[] Parameters(string batchId, string prefix) =>
    [
        (prefix + "id", batchId), (prefix + "s", Succeeded), (prefix + "f", Failed), (prefix + "c", Cancelled), (prefix + "e", Expired),
        (prefix + "in", InputTokens), (prefix + "out", OutputTokens), (prefix + "cost", CostNanos), (prefix + "unpriced", Unpriced), (prefix + "over", BudgetExceeded),
        (prefix + "ns", NativeSucceeded), (prefix + "nc", NativeCostNanos), (prefix + "fs", FlexSucceeded), (prefix + "fc", FlexCostNanos), (prefix + "saved", SavedNanos),
        (prefix + "cached", Cached), (prefix + "csaved", CacheSavedNanos),
        (prefix + "vfirst", ValidFirst), (prefix + "vreasked", ValidReasked), (prefix + "invalid", InvalidOutput), (prefix + "reasked", Reasked), (prefix + "rcost", ReaskCostNanos),
    ];
}
