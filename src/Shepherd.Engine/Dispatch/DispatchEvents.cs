using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>What the loop is told: an answer, a claim's result, or just "look again".</summary>
internal abstract record DispatchEvent
{
    public static readonly DispatchEvent Wake = new WakeEvent();

    public static readonly DispatchEvent DropLeases = new DropLeasesEvent();
}

internal sealed record WakeEvent : DispatchEvent;

/// <summary>The node's leases were taken by other nodes: what it holds unsent is dropped.</summary>
internal sealed record DropLeasesEvent : DispatchEvent;

/// <summary>Retries are in the store, due at these times (the earliest per model): their queues look for them then, not at their next idle look.</summary>
internal sealed record RetriesStoredEvent(IReadOnlyDictionary<string, DateTimeOffset> Due) : DispatchEvent;

internal sealed record ClaimedEvent(ModelQueue Queue, IReadOnlyList<ClaimedItem> Items, DateTimeOffset? NextDue) : DispatchEvent
{
    /// <summary>Claimed items the answer cache answered, with their answers: they are not sent.</summary>
    public IReadOnlyList<(ClaimedItem Item, Storage.CachedAnswer Answer)> Hits { get; init; } = [];

    /// <summary>The cache key of each item sent, by item id, so its answer can be kept; empty without a cache.</summary>
    public IReadOnlyDictionary<long, string> Keys { get; init; } = new Dictionary<long, string>();

    /// <summary>What each item that asks for structured output asks, and how often its batch lets an answer that does not fit be asked again, by item id.</summary>
    public IReadOnlyDictionary<long, (Formats.OutputContract Contract, int MaxReasks)> Contracts { get; init; } = new Dictionary<long, (Formats.OutputContract, int)>();
}

/// <summary>A realtime call to queue: new, or due again after a transient failure.</summary>
internal sealed record CallEvent(RealtimeCall Call) : DispatchEvent;

/// <summary>An answer, already classified where it arrived, so the loop only decides; null when abandoned on stop.</summary>
internal sealed record AnsweredEvent(WorkItem Work, Lane Lane, SentRequest Reservation, UpstreamResponse? Response, Classified Classified) : DispatchEvent;
