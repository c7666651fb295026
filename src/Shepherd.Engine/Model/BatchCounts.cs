using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Pricing;

namespace Shepherd.Engine.Model;

/// <summary>
/// How a batch's requests ended and what they used, as every summary of a batch writes them as
/// JSON: the dashboard, <c>shepherd status --json</c> and <c>shepherd run --json</c>. A plain
/// shape, so a batch a server answered with (Shepherd.Client's) is written as one read from a store.
/// </summary>
/// <param name="Total">Requests in the batch.</param>
/// <param name="Succeeded">Requests that succeeded.</param>
/// <param name="Failed">Requests that failed; those cancelled or expired are counted apart.</param>
/// <param name="Cancelled">Requests never sent because the batch was cancelled.</param>
/// <param name="Expired">Requests still unsent when the completion window ended.</param>
/// <param name="InputTokens">Prompt tokens of the answers.</param>
/// <param name="OutputTokens">Answer tokens.</param>
/// <param name="CostUsd">What the answers cost, in US dollars.</param>
public readonly record struct BatchCounts(long Total, long Succeeded, long Failed, long Cancelled, long Expired, long InputTokens, long OutputTokens, decimal CostUsd)
{
    /// <summary>Answers of models without a price, counted as $0.</summary>
    public long Unpriced { get; init; }

    /// <summary>The batch's budget in US dollars; null for none.</summary>
    public decimal? BudgetUsd { get; init; }

    /// <summary>Requests failed because the budget was spent.</summary>
    public long BudgetExceeded { get; init; }

    /// <summary>The answers by the tier that answered them, and what they saved against the list price.</summary>
    public TierCounts Tiers { get; init; }

    /// <summary>Of <see cref="Succeeded"/>, answers not sent for, and not paid for, again: from the answer cache or kept from an earlier run of the same input.</summary>
    public long Cached { get; init; }

    /// <summary>What the <see cref="Cached"/> answers cost when they were bought, in US dollars: what the cache saved.</summary>
    public decimal CacheSavedUsd { get; init; }

    /// <summary>How the answers checked against the structured output their requests asked for came out.</summary>
    public OutputCounts Output { get; init; }

    /// <summary>Requests that have ended, however they ended.</summary>
    public long Finished => Succeeded + Failed + Cancelled + Expired;

    /// <summary>Finished requests as a share of all, 0 to 100, to a tenth.</summary>
    public double Percent => Total == 0 ? 0 : Math.Round(100.0 * Finished / Total, 1);

    /// <summary>The counts of a batch the store holds.</summary>
    public static BatchCounts Of(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return new(batch.Total, batch.Succeeded, batch.Failed, batch.Cancelled, batch.Expired, batch.InputTokens, batch.OutputTokens, Cost.ToUsd(batch.CostNanos))
        {
            Unpriced = batch.Unpriced,
            BudgetUsd = batch.BudgetNanos is { } budget ? Cost.ToUsd(budget) : null,
            BudgetExceeded = batch.BudgetExceeded,
            Tiers = new TierCounts(
                batch.Tiers.RealtimeSucceeded(batch), Cost.ToUsd(batch.Tiers.RealtimeCostNanos(batch)),
                batch.Tiers.NativeSucceeded, Cost.ToUsd(batch.Tiers.NativeCostNanos),
                batch.Tiers.FlexSucceeded, Cost.ToUsd(batch.Tiers.FlexCostNanos),
                Cost.ToUsd(batch.Tiers.SavedNanos)),
            Cached = batch.Cached,
            CacheSavedUsd = Cost.ToUsd(batch.CacheSavedNanos),
            Output = new OutputCounts(batch.Output.ValidFirst, batch.Output.ValidReasked, batch.Output.Invalid, batch.Output.Reasked, Cost.ToUsd(batch.Output.ReaskCostNanos)),
        };
    }

    /// <summary>
    /// Writes how the checked answers came out, <c>"output_checks": {"checked", "valid_first",
    /// "valid_reasked", "invalid", "valid_first_share", "valid_share", "reasked", "reask_cost_usd"}</c>;
    /// the shares are of the requests checked, 0 to 1, null while none was.
    /// </summary>
    public void WriteOutput(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartObject("output_checks");
        json.WriteNumber("checked", Output.Checked);
        json.WriteNumber("valid_first", Output.ValidFirst);
        json.WriteNumber("valid_reasked", Output.ValidReasked);
        json.WriteNumber("invalid", Output.Invalid);
        json.WriteNumberOrNull("valid_first_share", Output.FirstShare);
        json.WriteNumberOrNull("valid_share", Output.Share);
        json.WriteNumber("reasked", Output.Reasked);
        json.WriteNumber("reask_cost_usd", Output.ReaskCostUsd);
        json.WriteEndObject();
    }

    /// <summary>
    /// Writes the answers by tier, <c>"tiers": {"realtime": {"requests", "cost_usd"}, "native": …,
    /// "flex": …}</c>, and <c>saved_usd</c>, what the cheaper tiers saved against the list price;
    /// then the answers no tier was paid for, <c>cached</c>, and what they saved, <c>cache_saved_usd</c>.
    /// </summary>
    public void WriteTiers(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartObject("tiers");
        foreach (var (name, requests, cost) in new[] { ("realtime", Tiers.Realtime, Tiers.RealtimeUsd), ("native", Tiers.Native, Tiers.NativeUsd), ("flex", Tiers.Flex, Tiers.FlexUsd) })
        {
            json.WriteStartObject(name);
            json.WriteNumber("requests", requests);
            json.WriteNumber("cost_usd", cost);
            json.WriteEndObject();
        }

        json.WriteEndObject();
        json.WriteNumber("saved_usd", Tiers.SavedUsd);
        json.WriteNumber("cached", Cached);
        json.WriteNumber("cache_saved_usd", CacheSavedUsd);
    }

    /// <summary>
    /// One line for a person, such as <c>17 answers not sent for again ($0.0123 not paid again)</c>;
    /// null when no answer was cached.
    /// </summary>
    public string? DescribeCached() => Cached == 0
        ? null
        : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Cached:N0} answer{(Cached == 1 ? "" : "s")} not sent for again ({Cost.Describe(CacheSavedUsd)} not paid again)");

    /// <summary>
    /// Writes how far a batch has got, as the dashboard and <c>shepherd status --json</c> show it:
    /// <c>total</c>, the requests by how they ended, <c>finished</c>, <c>percent</c>, then the
    /// tokens, <c>cost_usd</c> and the answers by tier and from the cache.
    /// </summary>
    public void WriteProgress(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        WriteEnded(json, expiredFirst: false);
        json.WriteNumber("finished", Finished);
        json.WriteNumber("percent", Percent);
        WriteUsage(json);
        WriteTiers(json);
        WriteOutput(json);
    }

    /// <summary>
    /// Writes how an ended batch came out, as <c>shepherd run --json</c> sums up a run: the requests
    /// by how they ended (expired before cancelled, as that summary has always had them), the
    /// tokens, <c>cost_usd</c>, <c>unpriced_requests</c> and the answers by tier and from the cache. A run's batch has ended, so it has
    /// no <c>finished</c> or <c>percent</c> to tell.
    /// </summary>
    public void WriteOutcome(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        WriteEnded(json, expiredFirst: true);
        WriteUsage(json);
        json.WriteNumber("unpriced_requests", Unpriced);
        WriteTiers(json);
        WriteOutput(json);
    }

    /// <summary>Writes the budget (<c>budget_usd</c>, null for none) and the requests it stopped.</summary>
    public void WriteBudget(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteNumberOrNull("budget_usd", BudgetUsd);
        json.WriteNumber("budget_exceeded_requests", BudgetExceeded);
    }

    /// <summary>
    /// <c>total</c> and the requests by how they ended. <c>shepherd run --json</c> has always put
    /// <c>expired</c> before <c>cancelled</c>, the others after it; each keeps its order, as
    /// scripts and tests read them.
    /// </summary>
    private void WriteEnded(Utf8JsonWriter json, bool expiredFirst)
    {
        json.WriteNumber("total", Total);
        json.WriteNumber("succeeded", Succeeded);
        json.WriteNumber("failed", Failed);
        json.WriteNumber(expiredFirst ? "expired" : "cancelled", expiredFirst ? Expired : Cancelled);
        json.WriteNumber(expiredFirst ? "cancelled" : "expired", expiredFirst ? Cancelled : Expired);
    }

    private void WriteUsage(Utf8JsonWriter json)
    {
        json.WriteNumber("input_tokens", InputTokens);
        json.WriteNumber("output_tokens", OutputTokens);
        json.WriteNumber("cost_usd", CostUsd);
    }
}

/// <summary>How the answers checked against the structured output their requests asked for came out.</summary>
/// <param name="ValidFirst">Requests whose first answer fitted.</param>
/// <param name="ValidReasked">Requests whose answer fitted once asked again.</param>
/// <param name="Invalid">Requests that failed with <c>invalid_output</c>.</param>
/// <param name="Reasked">Answers that did not fit and were asked again.</param>
/// <param name="ReaskCostUsd">What those answers cost, in US dollars: answers paid for and thrown away.</param>
public readonly record struct OutputCounts(long ValidFirst, long ValidReasked, long Invalid, long Reasked, decimal ReaskCostUsd)
{
    /// <summary>Requests whose answers were checked, as they ended.</summary>
    public long Checked => ValidFirst + ValidReasked + Invalid;

    /// <summary>Of the checked requests, the share valid at the first try, 0 to 1 to four places; null while none was checked.</summary>
    public double? FirstShare => Checked == 0 ? null : Math.Round((double)ValidFirst / Checked, 4);

    /// <summary>Of the checked requests, the share valid in the end, after asking again; null while none was checked.</summary>
    public double? Share => Checked == 0 ? null : Math.Round((double)(ValidFirst + ValidReasked) / Checked, 4);

    /// <summary>
    /// One line for a person, such as <c>480 checked: 95.0% valid at the first try, 99.6% after
    /// asking again (26 asked again, $0.0031); 2 invalid_output</c>; null when none was checked.
    /// </summary>
    public string? Describe()
    {
        if (Checked == 0)
        {
            return null;
        }

        var culture = System.Globalization.CultureInfo.InvariantCulture;
        var text = string.Create(culture, $"{Checked:N0} checked: {FirstShare * 100:0.0}% valid at the first try, {Share * 100:0.0}% after asking again ({Reasked:N0} asked again, {Cost.Describe(ReaskCostUsd)})");
        return Invalid == 0 ? text : text + string.Create(culture, $"; {Invalid:N0} invalid_output");
    }
}

/// <summary>Answers by the tier that answered them, what each tier's cost, and what the cheaper tiers saved.</summary>
/// <param name="Realtime">Answers sent at the list price.</param>
/// <param name="RealtimeUsd">What they cost, in US dollars.</param>
/// <param name="Native">Answers of the providers' batch APIs.</param>
/// <param name="NativeUsd">What they cost.</param>
/// <param name="Flex">Answers of the flex tier.</param>
/// <param name="FlexUsd">What they cost.</param>
/// <param name="SavedUsd">What the native and flex answers would have cost more at the list price.</param>
public readonly record struct TierCounts(long Realtime, decimal RealtimeUsd, long Native, decimal NativeUsd, long Flex, decimal FlexUsd, decimal SavedUsd)
{
    /// <summary>
    /// One line for a person, such as <c>9,000 native ($1.20), 1,000 realtime ($0.30); $1.20 saved
    /// against the list price</c>; null when every answer came in realtime.
    /// </summary>
    public string? Describe()
    {
        if (Native == 0 && Flex == 0)
        {
            return null;
        }

        var parts = new[] { (Native, NativeUsd, "native"), (Flex, FlexUsd, "flex"), (Realtime, RealtimeUsd, "realtime") }
            .Where(t => t.Item1 > 0)
            .Select(t => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{t.Item1:N0} {t.Item3} ({Cost.Describe(t.Item2)})"));
        return $"{string.Join(", ", parts)}; {Cost.Describe(SavedUsd)} saved against the list price";
    }
}
