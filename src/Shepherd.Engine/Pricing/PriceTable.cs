using System.Collections.Frozen;
using System.Globalization;
using System.Text.RegularExpressions;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Pricing;

/// <summary>
/// A model's list prices in US dollars per million tokens, and what its provider's batch API
/// takes off them.
/// </summary>
/// <param name="Model">The model's name; a price also serves dated or suffixed versions of it (<c>gpt-4o-mini-2024-07-18</c>).</param>
/// <param name="Input">Per million prompt tokens.</param>
/// <param name="Output">Per million answer tokens.</param>
/// <param name="CachedInput">Per million prompt tokens read from the provider's cache, where that differs from <paramref name="Input"/>.</param>
/// <param name="BatchDiscount">The share the provider's batch API takes off (0.5 is half price); 0 where it has no batch API.</param>
/// <param name="ContextTokens">The model's context window in tokens, where known: a prompt beyond it is refused before it is sent.</param>
public sealed record ModelPrice(string Model, decimal Input, decimal Output, decimal? CachedInput = null, decimal BatchDiscount = 0.5m, int? ContextTokens = null)
{
    /// <summary>Checks the figures; <paramref name="where"/> names the price in the message.</summary>
    public void Validate(string where)
    {
        if (string.IsNullOrWhiteSpace(Model))
        {
            throw new ArgumentException($"{where}: a price needs a model name.");
        }

        if (Input < 0 || Output < 0 || CachedInput < 0)
        {
            throw new ArgumentException($"{where}: prices cannot be negative.");
        }

        if (BatchDiscount is < 0 or > 1)
        {
            throw new ArgumentException($"{where}: batchDiscount is a share from 0 to 1; it is {BatchDiscount}.");
        }

        if (ContextTokens < 1)
        {
            throw new ArgumentException($"{where}: contextTokens is a number of tokens of at least 1; it is {ContextTokens}.");
        }
    }
}

/// <summary>What requests cost: the tokens and the price per token, priced once per answer.</summary>
/// <param name="Nanos">The cost in billionths of a US dollar: exact for every price with up to three decimals per million tokens.</param>
/// <param name="Priced">False when the model has no price: its cost is 0, and it is flagged rather than guessed.</param>
public readonly record struct Cost(long Nanos, bool Priced)
{
    /// <summary>The cost in US dollars.</summary>
    public decimal Usd => Nanos / 1_000_000_000m;

    /// <summary>Dollars from billionths of a dollar.</summary>
    public static decimal ToUsd(long nanos) => nanos / 1_000_000_000m;

    /// <summary>
    /// An amount of dollars as every message and table shows it, so one amount reads the same
    /// everywhere: cents for $100 and more (<c>$1,234.50</c>), up to four decimals from a cent
    /// (<c>$0.0455</c>, <c>$12.50</c>), three significant digits below (<c>$0.000125</c>).
    /// </summary>
    public static string Describe(decimal usd)
    {
        var size = Math.Abs(usd);
        var text = size >= 100m || size == 0m ? usd.ToString("#,##0.00", CultureInfo.InvariantCulture)
            : size >= 0.01m ? usd.ToString("#,##0.00##", CultureInfo.InvariantCulture)
            : Math.Round(usd, 2 - (int)Math.Floor(Math.Log10((double)size)), MidpointRounding.AwayFromZero).ToString("0.00##########", CultureInfo.InvariantCulture);
        return text.StartsWith('-') ? "-$" + text[1..] : "$" + text;
    }

    /// <summary><see cref="Describe(decimal)"/> of billionths of a dollar.</summary>
    public static string Describe(long nanos) => Describe(ToUsd(nanos));

    /// <summary>The most a budget may be, in US dollars.</summary>
    public const decimal MaxBudgetUsd = 1_000_000_000m;

    /// <summary>
    /// A budget in billionths of a dollar from <paramref name="usd"/> dollars (a fraction of a
    /// billionth is dropped); null when it is not between 0 and <see cref="MaxBudgetUsd"/>.
    /// </summary>
    public static long? BudgetFromUsd(decimal usd) =>
        usd is >= 0 and <= MaxBudgetUsd ? (long)Math.Round(usd * 1_000_000_000m, MidpointRounding.ToZero) : null;
}

/// <summary>
/// Prices of models: a built-in table of common models' list prices, overridable and
/// extendable from the configuration. A model is found by its name, with dots and dashes alike
/// (<c>claude-sonnet-4.5</c> is <c>claude-sonnet-4-5</c>) and with any date or suffix after a
/// known name (<c>claude-sonnet-4-5-20250929</c>); a model found nowhere costs 0 and is flagged, never guessed.
/// </summary>
public sealed partial class PriceTable
{
    private readonly FrozenDictionary<string, ModelPrice> _prices;

    /// <summary>Creates a table of <paramref name="prices"/>; a later price of the same model wins.</summary>
    public PriceTable(IEnumerable<ModelPrice> prices)
    {
        ArgumentNullException.ThrowIfNull(prices);
        var byName = new Dictionary<string, ModelPrice>(StringComparer.Ordinal);
        foreach (var price in prices)
        {
            price.Validate($"price of {price.Model}");
            byName[Normalize(price.Model)] = price;
        }

        _prices = byName.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>
    /// List prices as published by the providers (US dollars per million tokens), November 2026,
    /// and the models' context windows (Claude Sonnet 4 and 4.5 with the million tokens of
    /// Anthropic's long-context option, so no prompt they accept is refused here).
    /// </summary>
    public static PriceTable BuiltIn { get; } = new(
    [
        new("gpt-4.1", 2.00m, 8.00m, 0.50m, ContextTokens: 1_047_576),
        new("gpt-4.1-mini", 0.40m, 1.60m, 0.10m, ContextTokens: 1_047_576),
        new("gpt-4.1-nano", 0.10m, 0.40m, 0.025m, ContextTokens: 1_047_576),
        new("gpt-4o", 2.50m, 10.00m, 1.25m, ContextTokens: 128_000),
        new("gpt-4o-mini", 0.15m, 0.60m, 0.075m, ContextTokens: 128_000),
        new("o3", 2.00m, 8.00m, 0.50m, ContextTokens: 200_000),
        new("o3-mini", 1.10m, 4.40m, 0.55m, ContextTokens: 200_000),
        new("o4-mini", 1.10m, 4.40m, 0.275m, ContextTokens: 200_000),
        new("text-embedding-3-small", 0.02m, 0m, ContextTokens: 8_191),
        new("text-embedding-3-large", 0.13m, 0m, ContextTokens: 8_191),
        new("claude-opus-4-1", 15.00m, 75.00m, 1.50m, ContextTokens: 200_000),
        new("claude-sonnet-4-5", 3.00m, 15.00m, 0.30m, ContextTokens: 1_000_000),
        new("claude-sonnet-4", 3.00m, 15.00m, 0.30m, ContextTokens: 1_000_000),
        new("claude-haiku-4-5", 1.00m, 5.00m, 0.10m, ContextTokens: 200_000),
        new("claude-3-5-haiku", 0.80m, 4.00m, 0.08m, ContextTokens: 200_000),
        new("deepseek-v3.2", 0.28m, 0.42m, 0.028m, BatchDiscount: 0m, ContextTokens: 128_000),
        new("deepseek-chat", 0.28m, 0.42m, 0.028m, BatchDiscount: 0m, ContextTokens: 128_000),
    ]);

    /// <summary>The prices in the table.</summary>
    public IReadOnlyCollection<ModelPrice> Prices => _prices.Values;

    /// <summary>This table with <paramref name="overrides"/> replacing or adding prices.</summary>
    public PriceTable With(IEnumerable<ModelPrice> overrides) => new([.. _prices.Values, .. overrides]);

    /// <summary>
    /// The price of <paramref name="model"/>, or null when the table has none. A date or
    /// <c>latest</c> after a known name is a version of it (<c>gpt-4o-mini-2024-07-18</c>,
    /// <c>claude-sonnet-4-5-20250929</c>); any other suffix is another model (<c>o3-pro</c> is not <c>o3</c>).
    /// </summary>
    public ModelPrice? Find(string model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var name = Normalize(model);
        return _prices.TryGetValue(name, out var price) || _prices.TryGetValue(VersionSuffix().Replace(name, ""), out price) ? price : null;
    }

    /// <summary>
    /// What an answer cost: <paramref name="cachedInput"/> of the <paramref name="input"/> tokens
    /// at the cached price, the rest at the input price, <paramref name="output"/> at the output
    /// price, all less the batch discount when <paramref name="batch"/>.
    /// </summary>
    public Cost Price(string model, long input, long output, long cachedInput = 0, bool batch = false)
    {
        if (Find(model) is not { } price)
        {
            return new Cost(0, Priced: input + output == 0);
        }

        var cached = Math.Clamp(cachedInput, 0, input);
        var dollarsPerMillion = ((input - cached) * price.Input) + (cached * (price.CachedInput ?? price.Input)) + (output * price.Output);
        if (batch)
        {
            dollarsPerMillion *= 1 - price.BatchDiscount;
        }

        // Dollars per million tokens times tokens, in billionths of a dollar: × 1,000.
        return new Cost((long)Math.Round(dollarsPerMillion * 1000m, MidpointRounding.AwayFromZero), Priced: true);
    }

    /// <summary>
    /// <paramref name="result"/> priced by the tokens it reports, at the price of the tier that
    /// answered it (native and flex at the batch discount), with what that saved against the list
    /// price. A result without tokens is returned as it is.
    /// </summary>
    public AttemptResult PriceAnswer(string model, ItemTier tier, AttemptResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (result.InputTokens + result.OutputTokens == 0)
        {
            return result;
        }

        var cost = Price(model, result.InputTokens, result.OutputTokens, result.CachedTokens, batch: tier != ItemTier.Realtime);
        var saved = tier == ItemTier.Realtime ? 0 : Price(model, result.InputTokens, result.OutputTokens, result.CachedTokens).Nanos - cost.Nanos;
        return result with { CostNanos = cost.Nanos, Priced = cost.Priced, SavedNanos = saved };
    }

    private static string Normalize(string model) => model.Trim().ToLowerInvariant().Replace('.', '-');

    [GeneratedRegex(@"-(\d{8}|\d{4}-\d{2}-\d{2}|\d{4}|latest)$")]
    private static partial Regex VersionSuffix();
}
