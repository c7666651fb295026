using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Pricing;

/// <summary>One tier's price and time for every request of an estimate.</summary>
/// <param name="Tier">The tier.</param>
/// <param name="Available">Whether a configured upstream offers it for every model (realtime always).</param>
/// <param name="Cost">What every request would cost on it.</param>
/// <param name="Minutes">How long it would take: the lanes' time for realtime and flex, the provider's window for native; null when unknown.</param>
public sealed record TierEstimate(ItemTier Tier, bool Available, Cost Cost, double? Minutes);

/// <summary>What the planner would do with one model's requests for a deadline.</summary>
/// <param name="Model">The model.</param>
/// <param name="Tier">The tier its requests start on.</param>
/// <param name="CutOverAfterMinutes">For native and flex, when what is still open would move to realtime; null for realtime.</param>
public sealed record ModelPlan(string Model, ItemTier Tier, double? CutOverAfterMinutes);

/// <summary>
/// Each tier's cost and time for an estimate's requests, and the planner's mix for a deadline:
/// native where a batch API serves the model and the deadline leaves room before the last safe
/// moment, flex where an upstream offers it, realtime otherwise. The plan's expected cost counts
/// every request at its starting tier's price; its most, every native and flex request moved to
/// realtime at the cut-over.
/// </summary>
public sealed record DeadlinePlan
{
    /// <summary>The deadline, from when the batch is created.</summary>
    public required TimeSpan Deadline { get; init; }

    /// <summary>Realtime, native and flex, each for every request.</summary>
    public required IReadOnlyList<TierEstimate> Tiers { get; init; }

    /// <summary>The planner's choice per model.</summary>
    public required IReadOnlyList<ModelPlan> Models { get; init; }

    /// <summary>What the plan is expected to cost.</summary>
    public required Cost Expected { get; init; }

    /// <summary>The most it can cost: what starts native or flex all moved to realtime.</summary>
    public required Cost Most { get; init; }

    /// <summary>How long realtime would need for everything, at the lanes' known (or assumed) rates.</summary>
    public required double RealtimeMinutes { get; init; }

    /// <summary>True when realtime alone could answer everything by the deadline: the plan can keep its promise.</summary>
    public bool OnTime => RealtimeMinutes <= Deadline.TotalMinutes;

    /// <summary>Plans <paramref name="models"/> (requests to <paramref name="endpoint"/>) for a <paramref name="deadline"/> over <paramref name="upstreams"/>.</summary>
    internal static DeadlinePlan Of(IReadOnlyList<ModelEstimate> models, string? endpoint, TimeSpan deadline, IReadOnlyList<UpstreamOptions> upstreams, NativeBatchOptions native)
    {
        endpoint ??= BatchEndpoints.ChatCompletions;
        bool Native(string model) => upstreams.Any(u => u.RunsBatchesAt(endpoint) && u.Serves(model));
        bool Flex(string model) => upstreams.Any(u => u.OffersFlexAt(endpoint) && u.Serves(model));
        TimeSpan Need(ModelEstimate m) => m.Minutes is { } minutes ? TimeSpan.FromMinutes(minutes) : native.RealtimeNeed(m.Requests, null);

        var plans = new List<ModelPlan>();
        long expected = 0, most = 0;
        foreach (var model in models)
        {
            var need = Need(model);
            var cutOver = deadline - need - native.Margin(need);
            var tier = Native(model.Model) && cutOver > TimeSpan.Zero ? ItemTier.Native : Flex(model.Model) ? ItemTier.Flex : ItemTier.Realtime;
            plans.Add(new ModelPlan(model.Model, tier, tier == ItemTier.Realtime ? null : Math.Max(0, cutOver.TotalMinutes)));
            expected += tier == ItemTier.Realtime ? model.Realtime.Nanos : model.Batch.Nanos;
            most += model.Realtime.Nanos;
        }

        var priced = models.All(m => m.Priced);
        var realtimeMinutes = models.Count == 0 ? 0 : models.Max(m => Need(m).TotalMinutes);
        return new DeadlinePlan
        {
            Deadline = deadline,
            Tiers =
            [
                new(ItemTier.Realtime, true, new Cost(models.Sum(m => m.Realtime.Nanos), priced), realtimeMinutes),
                new(ItemTier.Native, models.All(m => Native(m.Model)), new Cost(models.Sum(m => m.Batch.Nanos), priced), TimeSpan.FromHours(24).TotalMinutes),
                new(ItemTier.Flex, models.All(m => Flex(m.Model)), new Cost(models.Sum(m => m.Batch.Nanos), priced), realtimeMinutes),
            ],
            Models = plans,
            Expected = new Cost(expected, priced),
            Most = new Cost(most, priced),
            RealtimeMinutes = realtimeMinutes,
        };
    }

    /// <summary>Writes the plan as the <c>plan</c> object of an estimate's JSON.</summary>
    public void WriteTo(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartObject("plan");
        json.WriteNumber("deadline_minutes", Math.Round(Deadline.TotalMinutes, 1));
        json.WriteNumber("cost_usd", Expected.Usd);
        json.WriteNumber("most_usd", Most.Usd);
        json.WriteBoolean("on_time", OnTime);
        json.WriteNumber("realtime_minutes", Math.Round(RealtimeMinutes, 1));
        json.WriteStartArray("tiers");
        foreach (var tier in Tiers)
        {
            json.WriteStartObject();
            json.WriteString("tier", Dispatch.DispatchTelemetry.TierWord(tier.Tier));
            json.WriteBoolean("available", tier.Available);
            json.WriteNumber("cost_usd", tier.Cost.Usd);
            json.WriteNumberOrNull("minutes", tier.Minutes is { } minutes ? Math.Round(minutes, 1) : null);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteStartArray("models");
        foreach (var model in Models)
        {
            json.WriteStartObject();
            json.WriteString("model", model.Model);
            json.WriteString("tier", Dispatch.DispatchTelemetry.TierWord(model.Tier));
            json.WriteNumberOrNull("cut_over_after_minutes", model.CutOverAfterMinutes is { } minutes ? Math.Round(minutes, 1) : null);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }
}
