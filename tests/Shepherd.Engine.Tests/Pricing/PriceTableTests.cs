using Shepherd.Engine.Configuration;
using Shepherd.Engine.Pricing;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Pricing;

public sealed class PriceTableTests
{
    private const long Million = 1_000_000;

    public static TheoryData<string, decimal, decimal> ListPrices => new()
    {
        { "gpt-4.1", 2.00m, 8.00m },
        { "gpt-4.1-mini", 0.40m, 1.60m },
        { "gpt-4o-mini", 0.15m, 0.60m },
        { "claude-sonnet-4.5", 3.00m, 15.00m },
        { "claude-haiku-4.5", 1.00m, 5.00m },
        { "deepseek-v3.2", 0.28m, 0.42m },
    };

    [Theory]
    [MemberData(nameof(ListPrices))]
    public void TheListPrices_OfIssue6_AreBuiltIn_AndAMillionOfEachCostsExactlyTheirSum(string model, decimal input, decimal output)
    {
        var price = PriceTable.BuiltIn.Find(model);

        Assert.NotNull(price);
        Assert.Equal((input, output), (price.Input, price.Output));
        var cost = PriceTable.BuiltIn.Price(model, Million, Million);
        Assert.True(cost.Priced);
        Assert.Equal(input + output, cost.Usd);
        Assert.Equal((long)((input + output) * 1_000_000_000m), cost.Nanos);
        Assert.Equal(input, PriceTable.BuiltIn.Price(model, Million, 0).Usd);
        Assert.Equal(output, PriceTable.BuiltIn.Price(model, 0, Million).Usd);
    }

    [Theory]
    [InlineData("gpt-4o-mini-2024-07-18", "gpt-4o-mini")]
    [InlineData("gpt-4.1-2025-04-14", "gpt-4.1")]
    [InlineData("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini")]
    [InlineData("gpt-4.1-mini", "gpt-4.1-mini")]
    [InlineData("gpt-4o", "gpt-4o")]
    [InlineData("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")]
    [InlineData("claude-sonnet-4.5", "claude-sonnet-4-5")]
    [InlineData("claude-sonnet-4-5", "claude-sonnet-4-5")]
    [InlineData("claude-haiku-4-5-20251001", "claude-haiku-4-5")]
    [InlineData("Claude-Haiku-4.5", "claude-haiku-4-5")]
    [InlineData("deepseek-v3-2", "deepseek-v3.2")]
    [InlineData(" gpt-4.1 ", "gpt-4.1")]
    [InlineData("claude-3-5-haiku-latest", "claude-3-5-haiku")]
    public void ModelsAreFound_ByDatedOrSuffixedNames_WithDotsAndDashesAlike(string asked, string listed)
    {
        Assert.Equal(listed, PriceTable.BuiltIn.Find(asked)?.Model);
    }

    [Theory]
    [InlineData("gpt-5-turbo-ultra")]
    [InlineData("llama-3-70b")]
    [InlineData("o3-pro")]
    [InlineData("gpt-4o-audio-preview")]
    [InlineData("claude-sonnet-4-6")]
    [InlineData("gpt")]
    [InlineData("")]
    public void AnUnknownModel_CostsNothing_AndIsNotPriced(string model)
    {
        Assert.Null(PriceTable.BuiltIn.Find(model));

        var cost = PriceTable.BuiltIn.Price(model, 1000, 1000);

        Assert.Equal(new Cost(0, Priced: false), cost);
        Assert.Equal(0m, cost.Usd);
    }

    [Fact]
    public void CachedInput_IsPricedAtTheCachedPrice_AndNeverMoreThanTheInput()
    {
        // gpt-4.1: 2.00 input, 0.50 cached; 600k uncached + 400k cached = 1.20 + 0.20.
        Assert.Equal(1.40m, PriceTable.BuiltIn.Price("gpt-4.1", Million, 0, cachedInput: 400_000).Usd);
        Assert.Equal(0.50m, PriceTable.BuiltIn.Price("gpt-4.1", Million, 0, cachedInput: 5 * Million).Usd);
        Assert.Equal(2.00m, PriceTable.BuiltIn.Price("gpt-4.1", Million, 0, cachedInput: -3).Usd);

        // A price without a cached price charges cached tokens as input.
        var table = PriceTable.BuiltIn.With([new ModelPrice("plain", 1.00m, 2.00m)]);
        Assert.Equal(1.00m, table.Price("plain", Million, 0, cachedInput: Million).Usd);

        // gpt-4.1-nano caches at 0.025 per million: 25 billionths of a dollar per token, exactly.
        Assert.Equal(25, PriceTable.BuiltIn.Price("gpt-4.1-nano", 1, 0, cachedInput: 1).Nanos);
    }

    [Theory]
    [InlineData("gpt-4.1", 5.00)]
    [InlineData("gpt-4o-mini", 0.375)]
    [InlineData("claude-sonnet-4.5", 9.00)]
    [InlineData("claude-haiku-4.5", 3.00)]
    [InlineData("deepseek-v3.2", 0.70)]
    public void TheBatchDiscount_HalvesThePrice_WhereTheProviderHasABatchApi(string model, double batchUsd)
    {
        var realtime = PriceTable.BuiltIn.Price(model, Million, Million);
        var batch = PriceTable.BuiltIn.Price(model, Million, Million, batch: true);

        Assert.Equal((decimal)batchUsd, batch.Usd);
        var discount = PriceTable.BuiltIn.Find(model)!.BatchDiscount;
        Assert.Equal(realtime.Usd * (1 - discount), batch.Usd);
    }

    [Fact]
    public void DeepSeek_HasNoBatchDiscount()
    {
        Assert.Equal(0m, PriceTable.BuiltIn.Find("deepseek-v3.2")!.BatchDiscount);
        Assert.Equal(
            PriceTable.BuiltIn.Price("deepseek-v3.2", 12_345, 678),
            PriceTable.BuiltIn.Price("deepseek-v3.2", 12_345, 678, batch: true));
    }

    [Fact]
    public void With_ReplacesAndAddsPrices_AndLeavesTheBuiltInTableAlone()
    {
        var table = PriceTable.BuiltIn.With([new ModelPrice("gpt-4.1", 1.00m, 4.00m), new ModelPrice("my-model", 0.10m, 0.20m, BatchDiscount: 0m)]);

        Assert.Equal(5.00m, table.Price("gpt-4.1-2025-04-14", Million, Million).Usd);
        Assert.Equal(0.30m, table.Price("my-model", Million, Million).Usd);
        Assert.Equal(0.30m, table.Price("my-model", Million, Million, batch: true).Usd);
        Assert.Equal(0.75m, table.Price("gpt-4o-mini", Million, Million).Usd);
        Assert.Equal(10.00m, PriceTable.BuiltIn.Price("gpt-4.1", Million, Million).Usd);
        Assert.Null(PriceTable.BuiltIn.Find("my-model"));
    }

    [Fact]
    public void TheConfigurationsPrices_OverrideAndExtendTheTable()
    {
        using var folder = new TempDirectory();
        var path = folder.File("shepherd.json");
        File.WriteAllText(path, """
            {
              "prices": {
                "my-model": {"input": 1.0, "output": 2.0, "cachedInput": 0.5, "batchDiscount": 0.5},
                "gpt-4o-mini": {"input": 0.10, "output": 0.40}
              }
            }
            """);

        var table = ShepherdConfig.Load(path).PriceTable();

        Assert.Equal(new ModelPrice("my-model", 1.0m, 2.0m, 0.5m, 0.5m), table.Find("my-model"));
        Assert.Equal(3.0m, table.Price("my-model", Million, Million).Usd);
        Assert.Equal(1.5m, table.Price("my-model", Million, Million, batch: true).Usd);
        Assert.Equal(0.5m, table.Price("my-model", Million, 0, cachedInput: Million).Usd);
        Assert.Equal(0.50m, table.Price("gpt-4o-mini-2024-07-18", Million, Million).Usd);
        Assert.Equal(0.5m, table.Find("gpt-4o-mini")!.BatchDiscount);
    }

    [Theory]
    [InlineData("""{"prices":{"m":{"input":-1,"output":1}}}""", "negative")]
    [InlineData("""{"prices":{"m":{"input":1,"output":1,"batchDiscount":1.5}}}""", "batchDiscount")]
    [InlineData("""{"prices":{"m":{"input":1,"output":1,"discount":0.5}}}""", "discount")]
    [InlineData("""{"native":{"pollSeconds":0}}""", "native.pollSeconds")]
    public void ABadPriceInTheConfiguration_IsAnErrorNamingIt(string json, string named)
    {
        var error = Assert.Throws<ConfigException>(() => ConfigFiles.Load(json));

        Assert.Contains(named, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheNativePollInterval_ComesFromTheConfiguration()
    {
        using var folder = new TempDirectory();
        var path = folder.File("shepherd.json");
        File.WriteAllText(path, """{"native":{"pollSeconds":2.5}}""");

        Assert.Equal(TimeSpan.FromSeconds(2.5), ShepherdConfig.Load(path).Native!.ToOptions().PollInterval);
    }

    [Fact]
    public void ABadPrice_IsRefused()
    {
        Assert.Throws<ArgumentException>(() => new PriceTable([new ModelPrice("m", -1m, 1m)]));
        Assert.Throws<ArgumentException>(() => new PriceTable([new ModelPrice("m", 1m, 1m, BatchDiscount: 2m)]));
        Assert.Throws<ArgumentException>(() => new PriceTable([new ModelPrice(" ", 1m, 1m)]));
    }
}

/// <summary>docs/cost.md shows the built-in table and a worked example made from it; these keep them true.</summary>
public sealed class CostDocTests
{
    private const long TenMillion = 10_000_000;
    private const long FiveMillion = 5_000_000;

    private static readonly System.Globalization.CultureInfo Invariant = System.Globalization.CultureInfo.InvariantCulture;

    private static string Doc() => RepositoryFiles.Read("docs", "cost.md");

    /// <summary>The rows of the table between <c>&lt;!-- name:start --&gt;</c> and <c>&lt;!-- name:end --&gt;</c>, by their first cell.</summary>
    private static Dictionary<string, string[]> Rows(string doc, string name)
    {
        var start = doc.IndexOf($"<!-- {name}:start -->", StringComparison.Ordinal);
        var end = doc.IndexOf($"<!-- {name}:end -->", StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, $"docs/cost.md has no {name} table");
        return doc[start..end].Split('\n')
            .Where(line => line.StartsWith("| ", StringComparison.Ordinal) && !line.StartsWith("| model", StringComparison.Ordinal))
            .Select(line => line.Trim().Trim('|').Split('|').Select(cell => cell.Trim().Trim('`')).ToArray())
            .ToDictionary(cells => cells[0], StringComparer.Ordinal);
    }

    private static string Usd(decimal usd) => "$" + usd.ToString("#,##0.00", Invariant);

    private static string PriceRow(ModelPrice p) => string.Create(Invariant,
        $"| `{p.Model}` | {p.Input:0.00#} | {p.Output:0.00#} | {(p.CachedInput is { } c ? c.ToString("0.00#", Invariant) : "—")} | {(p.BatchDiscount == 0 ? "none" : $"{p.BatchDiscount:0%}")} |");

    private static string ExampleRow(ModelPrice p)
    {
        var realtime = PriceTable.BuiltIn.Price(p.Model, TenMillion, FiveMillion);
        var batch = PriceTable.BuiltIn.Price(p.Model, TenMillion, FiveMillion, batch: true);
        return $"| `{p.Model}` | {Usd(realtime.Usd)} | {Usd(batch.Usd)} | {Usd(realtime.Usd - batch.Usd)} |";
    }

    private static void AssertRows(Dictionary<string, string[]> documented, IEnumerable<ModelPrice> prices, Func<ModelPrice, string> row)
    {
        var expected = prices.Select(row).ToList();
        var message = "docs/cost.md is out of date; the rows should read:\n" + string.Join('\n', expected);
        Assert.True(documented.Count == expected.Count, message);
        foreach (var line in expected)
        {
            var cells = line.Trim().Trim('|').Split('|').Select(cell => cell.Trim().Trim('`')).ToArray();
            Assert.True(documented.TryGetValue(cells[0], out var written) && written.SequenceEqual(cells), message);
        }
    }

    [Fact]
    public void ThePriceTable_InTheDocs_IsTheBuiltInTable()
    {
        AssertRows(Rows(Doc(), "prices"), PriceTable.BuiltIn.Prices, PriceRow);
    }

    [Fact]
    public void TheWorkedExample_InTheDocs_IsWhatTheTableCharges()
    {
        // 10M input and 5M output tokens on every model that answers in tokens (not the embedding models).
        AssertRows(Rows(Doc(), "worked-example"), PriceTable.BuiltIn.Prices.Where(p => p.Output > 0), ExampleRow);
    }

    [Theory]
    [InlineData("0", "$0.00")]
    [InlineData("0.048", "$0.048")]
    [InlineData("0.0480", "$0.048")]
    [InlineData("0.0455", "$0.0455")]
    [InlineData("0.17549", "$0.1755")]
    [InlineData("0.000125", "$0.000125")]
    [InlineData("0.0087745", "$0.00877")]
    [InlineData("12.5", "$12.50")]
    [InlineData("1234.567", "$1,234.57")]
    [InlineData("-0.5", "-$0.50")]
    public void AnAmount_ReadsTheSameWhereverItIsShown(string usd, string shown) =>
        Assert.Equal(shown, Cost.Describe(decimal.Parse(usd, System.Globalization.CultureInfo.InvariantCulture)));
}
