using Shepherd.Engine.Model;

namespace Shepherd.Engine.Dispatch;

/// <summary>A leased item on its way: its url, and its prompt tokens once a lane needed them.</summary>
internal sealed class WorkItem(ClaimedItem item, string url, long order)
{
    public ClaimedItem Item { get; } = item;

    public string Url { get; } = url;

    public long Order { get; } = order;

    public int? PromptTokens { get; set; }

    public int? MaxOutputTokens { get; set; }

    /// <summary>The cost held against the batch's budget while the request is out.</summary>
    public long ReservedNanos { get; set; }

    /// <summary>The most the request may cost, while it waits for the budget.</summary>
    public long MostNanos { get; set; }

    /// <summary>The answer cache's key of the request as it is sent, so its answer can be kept; null without a cache.</summary>
    public string? CacheKey { get; init; }

    /// <summary>What the request asks its answer to be (its own schema, or its batch's); null for free text, which is not checked.</summary>
    public Formats.OutputContract? Contract { get; init; }

    /// <summary>How often its batch lets an answer that does not fit <see cref="Contract"/> be asked again.</summary>
    public int MaxReasks { get; init; }

    /// <summary>The realtime call this is, whose caller waits for it; null for a batch item, which the store holds.</summary>
    public RealtimeCall? Call { get; init; }
}

/// <summary>The items leased for one model, waiting for a lane, highest priority first. Owned by the dispatch loop.</summary>
internal sealed class ModelQueue(string model, IReadOnlyList<Lane> lanes)
{
    public string Model { get; } = model;

    public IReadOnlyList<Lane> Lanes { get; } = lanes;

    public PriorityQueue<WorkItem, (int Priority, long Order)> Items { get; } = new();

    public bool Claiming { get; set; }

    public DateTimeOffset? NextDue { get; set; }

    public int InFlight { get; set; }

    /// <summary>Items of this model taken out of the queue to wait for their batch's budget.</summary>
    public int Parked { get; set; }

    /// <summary>True when no lane of the model can send now (its key is refused, or its upstream down): only probes go.</summary>
    public bool IsBlocked
    {
        get
        {
            // Asked on every turn of the loop: a plain loop, no enumerator.
            for (var i = 0; i < Lanes.Count; i++)
            {
                if (!Lanes[i].IsHalted)
                {
                    return false;
                }
            }

            return Lanes.Count > 0;
        }
    }

    /// <summary>Queues an item by its batch's priority; a realtime call goes ahead of every batch item.</summary>
    public void Enqueue(WorkItem work) => Items.Enqueue(work, (work.Call is null ? -(int)work.Item.Priority : int.MinValue, work.Order));

    /// <summary>How many items to hold ready: two rounds of every lane's concurrency.</summary>
    public int Target => Math.Clamp(2 * Lanes.Sum(l => l.Concurrency.Limit), 4, 2000);
}
