namespace Shepherd.Simulator.Tests;

/// <summary>Checks of counts drawn at a share.</summary>
internal static class Shares
{
    /// <summary>Within five standard deviations of <paramref name="share"/> of <paramref name="n"/>, and one more for rounding.</summary>
    public static void AssertNear(int count, int n, double share, string what)
    {
        var slack = (5 * Math.Sqrt(n * share * (1 - share))) + 1;
        Assert.True(Math.Abs(count - (n * share)) <= slack, $"{count} of {n} {what}, for a share of {share}");
    }
}
