using System.Globalization;

namespace Shepherd.Bench;

/// <summary><c>--name value</c> pairs with defaults.</summary>
internal sealed class BenchArgs(Dictionary<string, string> values)
{
    public static BenchArgs Parse(IEnumerable<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var list = args.ToList();
        for (var i = 0; i + 1 < list.Count; i += 2)
        {
            if (!list[i].StartsWith("--", StringComparison.Ordinal))
            {
                throw new ArgumentException($"Expected --name value, got '{list[i]}'.");
            }

            values[list[i][2..]] = list[i + 1];
        }

        return new BenchArgs(values);
    }

    public string Text(string name, string defaultValue) => values.GetValueOrDefault(name, defaultValue);

    public int Int(string name, int defaultValue) =>
        values.TryGetValue(name, out var text) ? int.Parse(text, CultureInfo.InvariantCulture) : defaultValue;
}
